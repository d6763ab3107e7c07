#!/usr/bin/env bash
# PostgreSQL (Debian's server on this machine) on loopback, one cluster for the OMS.
# Usage: deploy/postgres.sh start|stop|status   (idempotent; start waits until the server accepts connections)
# Creates the cluster once with a password-protected admin role; service roles and schemas are made by
# `oms db bootstrap` (ops/db.py), so each service can only touch its own schema.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

find_pgbin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
PGBIN=${OMS_PG_BIN:-$(find_pgbin)}
if [ -z "$PGBIN" ] && ! command -v pg_ctl >/dev/null; then
  need_command /usr/lib/postgresql/15/bin/pg_ctl postgresql-15
  PGBIN=$(find_pgbin)
fi
[ -x "$PGBIN/pg_ctl" ] || PGBIN=$(dirname "$(command -v pg_ctl || echo /nonexistent/pg_ctl)")
[ -x "$PGBIN/pg_ctl" ] || die "PostgreSQL server binaries not found (install Debian's postgresql package)"

# Postgres refuses to run as root; as root we run it as the 'postgres' user, which must be able to reach
# the data folder. When the project sits somewhere that user cannot enter, the cluster lives in /var/tmp.
PG_HOME=$OMS_STATE_DIR/postgres
as_pg() { if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PG_HOME"
  if ! runuser -u postgres -- test -x "$PG_HOME"; then
    PG_HOME=/var/tmp/oms-postgres-$(printf '%s' "$OMS_ROOT" | md5sum | cut -c1-12)
  fi
  mkdir -p "$PG_HOME"; chown postgres: "$PG_HOME"
fi
DATA=$PG_HOME/data
LOGFILE=$PG_HOME/postgres.log
SOCKET_DIR=$PG_HOME

init_cluster() {
  [ -f "$DATA/PG_VERSION" ] && return
  log "creating PostgreSQL cluster in $DATA"
  local pwfile; pwfile=$(mktemp); printf '%s\n' "$OMS_PG_ADMIN_PASSWORD" >"$pwfile"; chmod 644 "$pwfile"
  as_pg "$PGBIN/initdb" -D "$DATA" -U "$OMS_PG_ADMIN_USER" --pwfile="$pwfile" \
    --auth-host=scram-sha-256 --auth-local=peer -E UTF8 --locale=C.UTF-8 >"$PG_HOME/initdb.log"
  rm -f "$pwfile"
  cat >>"$DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $OMS_PG_PORT
unix_socket_directories = '$SOCKET_DIR'
max_connections = 200
shared_buffers = 256MB
synchronous_commit = on
fsync = on
log_min_messages = warning
CONF
}

# What each statement costs (`oms bench` prints the costliest per order). A cluster made before this gets it at
# its next start.
ensure_statement_statistics() {
  grep -q '^shared_preload_libraries' "$DATA/postgresql.conf" && return
  printf "shared_preload_libraries = 'pg_stat_statements'\n" >>"$DATA/postgresql.conf"
}

ready() { "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$OMS_PG_PORT"; }

start() {
  init_cluster
  ensure_statement_statistics
  if as_pg "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then log "postgres already running"; return; fi
  port_open "$OMS_PG_PORT" && die "port $OMS_PG_PORT is taken by another server (another checkout's? stop it, or set OMS_PG_PORT)"
  log "starting postgres on 127.0.0.1:$OMS_PG_PORT"
  # The port is given at each start, not only written at init: a cluster follows OMS_PG_PORT when it changes.
  as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$LOGFILE" -o "-p $OMS_PG_PORT" -w -t 60 start >/dev/null 9>&-  # the server must not hold our lock
  wait_for 60 "postgres to accept connections" ready
  log "postgres ready"
}

stop() {
  if ! as_pg "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then log "postgres not running"; return; fi
  as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
  log "postgres stopped"
}

status() {
  if [ -f "$DATA/PG_VERSION" ] && as_pg "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1 && ready; then
    echo "postgres: running on 127.0.0.1:$OMS_PG_PORT ($DATA)"
  else echo "postgres: stopped"; return 3; fi
}

case ${1:-} in
  start) one_at_a_time postgres; start ;; stop) one_at_a_time postgres; stop ;; status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
