"""Pure types and business rules: vocabularies, errors, eligibility. No I/O."""
