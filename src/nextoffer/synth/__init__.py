"""Synthetic telco world: catalogue, customers, history and churn, with planted structure."""
