#!/bin/sh
# First start of the database only (the postgres image runs /docker-entrypoint-initdb.d/ on
# an empty data directory): roles, databases and grants, passwords from Docker secrets.
#   nextoffer          owns database nextoffer; REPLICATION for pg_basebackup (ops backups)
#   mlflow             owns database mlflow (the model registry's tracking store)
#   postgres_exporter  pg_monitor, a connection limit, nothing else
# PUBLIC loses CONNECT on both databases and every right on their public schemas.
# tests/deploy/test_service_configs.py runs this against a scratch server.
set -eu

secret() { tr -d '\r\n' < "$1"; }

app_password="$(secret "${NEXTOFFER_DB_PASSWORD_FILE:-/run/secrets/nextoffer_db_password}")"
mlflow_password="$(secret "${MLFLOW_DB_PASSWORD_FILE:-/run/secrets/mlflow_db_password}")"
exporter_password="$(secret "${EXPORTER_DB_PASSWORD_FILE:-/run/secrets/postgres_exporter_password}")"

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" \
  --dbname "${POSTGRES_DB:-postgres}" \
  -v app_password="$app_password" \
  -v mlflow_password="$mlflow_password" \
  -v exporter_password="$exporter_password" <<'SQL'
-- Passwords are in these statements: keep them out of the server log whatever its settings.
SET log_statement = 'none';
SET log_min_duration_statement = -1;

CREATE ROLE nextoffer LOGIN REPLICATION PASSWORD :'app_password';
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE ROLE postgres_exporter LOGIN PASSWORD :'exporter_password' CONNECTION LIMIT 3;
GRANT pg_monitor TO postgres_exporter;

CREATE DATABASE nextoffer OWNER nextoffer;
CREATE DATABASE mlflow OWNER mlflow;
REVOKE ALL ON DATABASE nextoffer FROM PUBLIC;
REVOKE ALL ON DATABASE mlflow FROM PUBLIC;
GRANT CONNECT ON DATABASE nextoffer TO postgres_exporter;
GRANT CONNECT ON DATABASE mlflow TO postgres_exporter;

\connect nextoffer
REVOKE ALL ON SCHEMA public FROM PUBLIC;
ALTER SCHEMA public OWNER TO nextoffer;
-- Query statistics for the Database dashboard and slow-query hunting.
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;

\connect mlflow
REVOKE ALL ON SCHEMA public FROM PUBLIC;
ALTER SCHEMA public OWNER TO mlflow;
SQL

# pg_basebackup of the backup job connects for replication from another container.
if [ -n "${PGDATA:-}" ] && [ -w "$PGDATA/pg_hba.conf" ]; then
  echo "host replication nextoffer all scram-sha-256" >> "$PGDATA/pg_hba.conf"
fi
