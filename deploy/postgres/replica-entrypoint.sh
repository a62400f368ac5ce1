#!/bin/bash
# The replica: on its first start (empty volume) it clones the primary with
# `pg_basebackup -R`, which also writes primary_conninfo and standby.signal; then, and on every
# later start, it runs as a hot standby that streams WAL from the primary.
set -euo pipefail

PGDATA="${PGDATA:-/var/lib/postgresql/data}"
PRIMARY_HOST="${PRIMARY_HOST:-primary}"
PRIMARY_PORT="${PRIMARY_PORT:-5432}"

mkdir -p "$PGDATA"
chown postgres:postgres "$PGDATA"
chmod 0700 "$PGDATA"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  echo "replica: cloning ${PRIMARY_HOST}:${PRIMARY_PORT} with pg_basebackup"
  until pg_isready -q -h "$PRIMARY_HOST" -p "$PRIMARY_PORT"; do sleep 1; done
  # The password travels in the environment only, never on a command line.
  PGPASSWORD="$REPLICATION_PASSWORD" gosu postgres pg_basebackup \
    -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U "${REPLICATION_USER:-replicator}" \
    -D "$PGDATA" -R -X stream -c fast
fi

exec gosu postgres postgres -D "$PGDATA" -c hot_standby=on -c hot_standby_feedback=on
