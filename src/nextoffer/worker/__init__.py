"""Celery workers: the app for NEXTOFFER_BROKER_URL, thin task wrappers, precompute fan-out."""
