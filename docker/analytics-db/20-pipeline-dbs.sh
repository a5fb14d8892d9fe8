#!/usr/bin/env bash
# PADAM's two databases (production and warehouse), the ads database and (past one machine)
# the shared state's and Airflow's metadata database live on the
# analytics server: one Postgres service, as on the embedded server, instead of one
# server each - the pipelines only need databases, and one service is one less volume
# to back up. Runs on first start; idempotent, so for a volume created before them:
#   docker compose exec analytics-db bash /docker-entrypoint-initdb.d/20-pipeline-dbs.sh
set -euo pipefail
for prefix in PADAM_PROD_PG PADAM_WH_PG ADS_PG NW_STATE_PG AIRFLOW_PG; do
    role_var="${prefix}_USER" password_var="${prefix}_PASSWORD" db_var="${prefix}_DATABASE"
    # The state and Airflow databases are for the distributed mode only: created once set.
    if [ -z "${!password_var:-}" ]; then continue; fi
    psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER}" --dbname "${POSTGRES_DB}" \
        -v role="${!role_var}" -v password="${!password_var}" -v db="${!db_var}" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'role', :'password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
done
