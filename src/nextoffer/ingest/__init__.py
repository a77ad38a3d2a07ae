"""Import files: read CSV/Parquet, validate every row, upsert good rows, quarantine bad ones."""
