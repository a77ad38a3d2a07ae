"""Recommenders, the next-best-offer ranker and the churn model."""
