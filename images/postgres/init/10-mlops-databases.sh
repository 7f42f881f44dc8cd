#!/bin/bash
# Runs once, on the first start of an empty data volume (the postgres image's /docker-entrypoint-initdb.d):
# one database each for MLflow, Mage and the monitoring store, the `monitoring` schema the store's
# migrations fill, and a read-only role for Grafana's dashboards and alert rules.
# Every name and password comes from the environment (docker-compose.yml passes them from .env).
set -euo pipefail

: "${MLFLOW_DB:?}" "${MAGE_DB:?}" "${MONITORING_DB:?}" "${GRAFANA_DB_USER:?}" "${GRAFANA_DB_PASSWORD:?}"

psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password)

for db in "$MLFLOW_DB" "$MAGE_DB" "$MONITORING_DB"; do
    "${psql[@]}" --dbname postgres -v db="$db" <<'SQL'
SELECT format('CREATE DATABASE %I', :'db') WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db')\gexec
SQL
done

"${psql[@]}" --dbname "$MONITORING_DB" -v reader="$GRAFANA_DB_USER" -v reader_password="$GRAFANA_DB_PASSWORD" \
    -v owner="$POSTGRES_USER" -v db="$MONITORING_DB" <<'SQL'
CREATE SCHEMA IF NOT EXISTS monitoring AUTHORIZATION :"owner";
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'reader', :'reader_password')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'reader')\gexec
GRANT CONNECT ON DATABASE :"db" TO :"reader";
GRANT USAGE ON SCHEMA monitoring TO :"reader";
GRANT SELECT ON ALL TABLES IN SCHEMA monitoring TO :"reader";
-- tables the migrations create later are readable too
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA monitoring GRANT SELECT ON TABLES TO :"reader";
SQL
