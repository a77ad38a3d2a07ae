"""Jobs: the catalogue of every job, the one way a job starts (lock + one run record), dispatch."""
