#!/usr/bin/env bash
# The people/places pipeline's database lives on the analytics server (one Postgres
# service, two databases): its own role and database, created on first start.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v role="$PEOPLE_PG_USER" -v password="$PEOPLE_PG_PASSWORD" -v db="$PEOPLE_PG_DATABASE" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"db" OWNER :"role";
SQL
