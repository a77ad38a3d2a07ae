"""Model registry on MLflow: versions, the champion alias, and model quality gauges."""
