#!/bin/sh
# Writes every Docker secret the compose files use into one folder, one file per secret,
# without a trailing newline. Existing files are kept, so running it again never rotates a
# password behind a running database's back (delete a file to regenerate it).
#
#   deploy/secrets/generate.sh deploy/secrets/prod     random values (production)
#   deploy/secrets/generate.sh --dev deploy/secrets/dev  the fixed, public development values
#
# Needs sh, od, tr and openssl (for the htpasswd line of the monitoring UIs).
set -eu

dev=false
if [ "${1:-}" = "--dev" ]; then
  dev=true
  shift
fi
dir="${1:?usage: generate.sh [--dev] DIR}"
mkdir -p "$dir"
chmod 0750 "$dir"

# A random token of letters and digits: safe in URLs, config files and shell words.
random() {
  od -An -N48 -tx1 /dev/urandom | tr -d ' \n' | cut -c1-"${1:-32}"
}

value() { # name: the dev value or a random one
  if $dev; then printf 'dev-%s-not-secret' "$1"; else random 32; fi
}

put() { # name content: write unless present; readable by the containers' users
  if [ ! -e "$dir/$1" ]; then
    printf '%s' "$2" > "$dir/$1"
    chmod 0444 "$dir/$1"
  fi
}

get() { cat "$dir/$1"; }

put postgres_password "$(value postgres)"
put nextoffer_db_password "$(value nextoffer-db)"
put mlflow_db_password "$(value mlflow-db)"
put postgres_exporter_password "$(value exporter-db)"
put redis_cache_password "$(value redis-cache)"
put redis_broker_password "$(value redis-broker)"
put jwt_secret "$(if $dev; then printf 'dev-jwt-secret-not-secret-at-least-32-chars'; else random 64; fi)"
put minio_root_user "$(if $dev; then printf 'nextoffer-admin'; else printf 'admin-%s' "$(random 8)"; fi)"
put minio_root_password "$(value minio-root)"
put grafana_admin_password "$(value grafana)"
put airflow_db_password "$(value airflow-db)"
put airflow_jwt_secret "$(value airflow-jwt)"
# Fernet key: url-safe base64 of 32 bytes (Airflow's format).
put airflow_fernet_key "$(if $dev; then printf 'ZGV2LWZlcm5ldC1rZXktbm90LXNlY3JldC0zMmJ5dGU='; else head -c 32 /dev/urandom | base64 | tr '+/' '-_'; fi)"
# Filled in by the operator: SMTP password and Slack webhook of the alert receivers.
put alertmanager_smtp_password "$(if $dev; then printf 'dev-smtp-not-secret'; else printf 'CHANGE-ME'; fi)"
put alertmanager_slack_webhook_url "https://hooks.slack.com/services/CHANGE/ME/PLEASE"

# Derived secrets: connection URLs and maps built from the passwords above.
db="$(get nextoffer_db_password)"
put nextoffer_database_url "postgresql+psycopg://nextoffer:${db}@postgres:5432/nextoffer"
# Production: the API goes through pgbouncer (transaction pooling); jobs keep the direct URL
# because they hold session advisory locks (store/locks.py).
put nextoffer_database_url_pooled "postgresql+psycopg://nextoffer:${db}@pgbouncer:6432/nextoffer"
put pgbouncer_userlist "\"nextoffer\" \"${db}\""
put nextoffer_cache_url "redis://:$(get redis_cache_password)@redis:6379/0"
put nextoffer_broker_url "redis://:$(get redis_broker_password)@redis-broker:6379/0"
put redis_exporter_passwords "{\"redis://redis:6379\": \"$(get redis_cache_password)\", \"redis://redis-broker:6379\": \"$(get redis_broker_password)\"}"
put airflow_database_url "postgresql+psycopg2://airflow:$(get airflow_db_password)@airflow-postgres:5432/airflow"
app_key="$(if $dev; then printf 'nextoffer-app'; else printf 'app-%s' "$(random 12)"; fi)"
put s3_credentials "[default]
aws_access_key_id = ${app_key}
aws_secret_access_key = $(value s3-app)
"
# Basic auth of the monitoring UIs behind Traefik (production): user `monitoring`.
put monitoring_password "$(value monitoring)"
if [ ! -e "$dir/traefik_users" ]; then
  if command -v openssl >/dev/null 2>&1; then
    put traefik_users "monitoring:$(openssl passwd -apr1 "$(get monitoring_password)")"
  else
    echo "generate.sh: openssl not found: write $dir/traefik_users yourself (htpasswd -nB monitoring)" >&2
  fi
fi
echo "secrets in $dir: $(ls "$dir" | wc -l) files"
