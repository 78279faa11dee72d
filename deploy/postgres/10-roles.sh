#!/bin/sh
# Runs once, on a new volume, as the image's superuser (SPEC §9.4). Two roles, neither a
# superuser: `oversight` owns the database and its tables and runs `migrate`; `oversight_app` is
# what web, worker and beat connect as, granted its rights by every `migrate` (audit/roles.py).
# Each password reaches only the services that need it (docker-compose.yml). On an existing
# volume, run the same statements by hand (docs/architecture.md).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  --set owner_password="$OVERSIGHT_DB_OWNER_PASSWORD" \
  --set app_password="$OVERSIGHT_DB_APP_PASSWORD" <<'SQL'
CREATE ROLE oversight LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'owner_password';
CREATE ROLE oversight_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'app_password';
CREATE DATABASE oversight OWNER oversight;
\connect oversight
ALTER SCHEMA public OWNER TO oversight;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SQL
