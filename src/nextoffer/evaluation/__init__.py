"""Offline evaluation: ranking and classification metrics, train/test splits, drift."""
