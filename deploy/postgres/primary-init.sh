#!/bin/bash
# Runs once, when the primary's data volume is empty (docker-entrypoint-initdb.d).
# The same roles and grants as taskgate/pgpair.py: the app role owns the schema, the reader
# role is read-only by default and gets SELECT on the tables the read tools need from the
# migration (shared/migrations/versions/0003_reader_grants.py), the replicator may stream WAL.
set -euo pipefail

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v app_password="$TASKGATE_PASSWORD" \
  -v reader_password="$TASKGATE_READER_PASSWORD" \
  -v replication_password="$REPLICATION_PASSWORD" <<'SQL'
CREATE ROLE taskgate LOGIN PASSWORD :'app_password';
CREATE ROLE taskgate_reader LOGIN PASSWORD :'reader_password';
CREATE ROLE replicator LOGIN REPLICATION PASSWORD :'replication_password';
CREATE DATABASE taskgate OWNER taskgate;
SQL

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname taskgate <<'SQL'
REVOKE ALL ON DATABASE taskgate FROM PUBLIC;
GRANT CONNECT ON DATABASE taskgate TO taskgate, taskgate_reader;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO taskgate;
GRANT USAGE ON SCHEMA public TO taskgate_reader;
ALTER ROLE taskgate_reader SET default_transaction_read_only = on;
GRANT pg_read_all_stats TO taskgate_reader;
SQL

# The image's pg_hba.conf admits "all" databases, which does not cover replication connections.
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
