#!/usr/bin/env bash
# A throwaway PostgreSQL for the firmware registry tests, on 127.0.0.1 only.
# Idempotent; run as root (CI). Installs PostgreSQL when missing, starts a private
# cluster under /tmp (port 55432), creates the role and database `qpuos_test`, and
# prints the one line to eval:
#   eval "$(bash scripts/ci_postgres.sh)"   # exports QPUOS_TEST_PG_URL
# Progress goes to stderr so stdout is only that line.
set -euo pipefail

PGDATA_DIR=${QPUOS_PG_DIR:-/tmp/qpuos-pg}
PORT=${QPUOS_PG_PORT:-55432}
NAME=qpuos_test
PASSWORD=qpuos_test

log() { echo "ci_postgres: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "run as root (it installs packages and runs the server as user postgres)"
    exit 1
fi

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
    log "installing postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends postgresql >&2
    bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi

as_pg() { runuser -u postgres -- "$@"; }

if [ ! -s "$PGDATA_DIR/PG_VERSION" ]; then
    log "initdb $PGDATA_DIR"
    rm -rf "$PGDATA_DIR"
    install -d -o postgres -g postgres -m 700 "$PGDATA_DIR"
    as_pg "$bindir/initdb" -D "$PGDATA_DIR" -U postgres --auth-local=trust \
        --auth-host=scram-sha-256 -E UTF8 >&2
fi

if ! as_pg "$bindir/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1; then
    log "starting on 127.0.0.1:$PORT"
    as_pg "$bindir/pg_ctl" -D "$PGDATA_DIR" -w -t 60 -l "$PGDATA_DIR/server.log" \
        -o "-c listen_addresses=127.0.0.1 -p $PORT -k $PGDATA_DIR -c max_connections=200" \
        start >&2
fi

psql_pg() { as_pg "$bindir/psql" -h "$PGDATA_DIR" -p "$PORT" -U postgres -qAt -v ON_ERROR_STOP=1 "$@"; }
if [ "$(psql_pg -c "SELECT 1 FROM pg_roles WHERE rolname = '$NAME'")" != 1 ]; then
    psql_pg -c "CREATE ROLE $NAME LOGIN PASSWORD '$PASSWORD'" >&2
fi
if [ "$(psql_pg -c "SELECT 1 FROM pg_database WHERE datname = '$NAME'")" != 1 ]; then
    psql_pg -c "CREATE DATABASE $NAME OWNER $NAME" >&2
fi

echo "export QPUOS_TEST_PG_URL=postgresql://$NAME:$PASSWORD@127.0.0.1:$PORT/$NAME"
