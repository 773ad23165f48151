#!/bin/sh
# The app's least-privilege PostgreSQL login (README "Roles"): created if missing, its password
# set. It owns nothing; `python -m svc migrate apply` grants it its table privileges.
# Run by the postgres image on a new data directory (compose mounts it into
# /docker-entrypoint-initdb.d), and by svc/stack.py for `make up` and the tests.
# Reads POSTGRES_USER and POSTGRES_DB (who runs it, where), APP_DB_USER and APP_DB_PASSWORD;
# psql takes the server from PGHOST/PGPORT/PGPASSWORD (the image: its local socket).
set -eu
psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     --set app_user="$APP_DB_USER" --set app_password="$APP_DB_PASSWORD" <<'SQL'
-- psql quotes :"name" as an identifier and :'name' as a literal.
select not exists (select from pg_roles where rolname = :'app_user') as missing \gset
\if :missing
create role :"app_user";
\endif
alter role :"app_user" with login nosuperuser nocreatedb nocreaterole password :'app_password';
SQL
