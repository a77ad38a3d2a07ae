"""The jobs: plain functions that the CLI, Celery tasks and Airflow DAGs all call."""
