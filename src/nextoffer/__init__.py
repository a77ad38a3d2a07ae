"""nextoffer: self-hosted next-best-offer platform for telecom operators."""

__version__ = "0.1.0"
