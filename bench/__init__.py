"""Benchmarks: each writes a JSON result under bench/results/."""
