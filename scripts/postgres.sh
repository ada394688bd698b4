#!/usr/bin/env bash
# Starts (or reuses) a throwaway PostgreSQL cluster for the reader-study tests and prints its URL
# on stdout, for ANGIOSYNTH_TEST_POSTGRES_URL; messages go to stderr.
#
#   export ANGIOSYNTH_TEST_POSTGRES_URL="$(bash scripts/postgres.sh)"
#
# As root, Debian's `postgresql` package is installed with apt-get when missing and the cluster
# runs as the `postgres` user; otherwise it runs as the calling user when PostgreSQL's binaries
# are installed. With neither, it prints nothing and exits 0: the PostgreSQL tests are skipped.
# The cluster listens on 127.0.0.1:$PGPORT (default 55432) with password (SCRAM) logins and has
# a user and database `angiosynth`; the user may create databases (one per test). It is a test
# cluster: fsync is off. Running the script again reuses a running cluster (well under a
# second). Stop it with: pg_ctl -D "$PGDATA" stop (as the user that owns it).
set -euo pipefail

PGPORT=${ANGIOSYNTH_PG_PORT:-55432}
USER_NAME=angiosynth
PASSWORD=angiosynth
DB_NAME=angiosynth
log() { echo "postgres.sh: $*" >&2; }

root=false
[ "$(id -u)" = 0 ] && root=true

# The folder of initdb, pg_ctl and postgres (Debian's newest version first), or nothing.
find_bin() {
    local initdb
    initdb=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1)
    [ -n "$initdb" ] || initdb=$(command -v initdb || true)
    [ -z "$initdb" ] || dirname "$(readlink -f "$initdb")"
}
BIN=$(find_bin)
if [ -z "$BIN" ]; then
    if $root && command -v apt-get >/dev/null; then
        log "installing Debian's postgresql"
        apt_install() {
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                postgresql >/dev/null
        }
        apt_install 2>/dev/null || { apt-get update -qq && apt_install; }
        BIN=$(find_bin)
    else
        log "PostgreSQL is not installed and this is not root with apt-get: PostgreSQL tests skipped"
        exit 0
    fi
fi

if $root; then
    PGDATA=${ANGIOSYNTH_PGDATA:-/tmp/angiosynth-postgres}
    as_owner() { (cd / && runuser -u postgres -- "$@"); }
else
    PGDATA=${ANGIOSYNTH_PGDATA:-${TMPDIR:-/tmp}/angiosynth-postgres-$(id -u)}
    as_owner() { "$@"; }
fi
SOCKETS=$PGDATA/sockets

if [ ! -f "$PGDATA/PG_VERSION" ]; then
    log "creating a cluster in $PGDATA"
    rm -rf "$PGDATA"
    mkdir -p "$PGDATA"
    chmod 700 "$PGDATA"
    $root && chown postgres: "$PGDATA"
    as_owner "$BIN/initdb" -D "$PGDATA" --auth-local=peer --auth-host=scram-sha-256 \
        -E UTF8 --locale=C.UTF-8 >/dev/null
    as_owner mkdir -p "$SOCKETS"
    cat >>"$PGDATA/postgresql.conf" <<EOF
# angiosynth test cluster (scripts/postgres.sh)
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$SOCKETS'
max_connections = 200
fsync = off
full_page_writes = off
EOF
fi

if ! as_owner "$BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    log "starting PostgreSQL on 127.0.0.1:$PGPORT"
    as_owner "$BIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -t 60 start >/dev/null \
        || { tail -n 20 "$PGDATA/server.log" >&2; exit 1; }
fi

psql_admin() { as_owner "$BIN/psql" -h "$SOCKETS" -p "$PGPORT" -d postgres -qtAX "$@"; }
if [ -z "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$USER_NAME'")" ]; then
    psql_admin -c "CREATE ROLE $USER_NAME LOGIN CREATEDB PASSWORD '$PASSWORD'"
fi
if [ -z "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" ]; then
    psql_admin -c "CREATE DATABASE $DB_NAME OWNER $USER_NAME"
fi

log "PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') is up on 127.0.0.1:$PGPORT"
echo "postgresql://$USER_NAME:$PASSWORD@127.0.0.1:$PGPORT/$DB_NAME"
