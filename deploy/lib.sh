# Shared helpers for the deploy scripts: project paths, dev settings, small waits.
# shellcheck shell=bash
OMS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OMS_STATE_DIR=${OMS_STATE_DIR:-$OMS_ROOT/.oms}
# dev.env gives defaults; the real environment always wins (as in ops/env.py), so a second stack can run beside
# the first on other ports: OMS_KAFKA_PORT, OMS_KAFKA_CONTROLLER_PORT, OMS_KAFKA_BOOTSTRAP, OMS_PG_PORT.
# Keep them below 32768, out of Linux's ephemeral range: there, clients reconnecting to a restarting server can be
# handed its port as their own and connect to themselves, and the server cannot bind it again.
while IFS='=' read -r name value; do
  case $name in '' | \#*) continue ;; esac
  [ -n "${!name+x}" ] || export "$name=$value"
done <"$OMS_ROOT/deploy/dev.env"

log() { printf '[oms] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# wait_for SECONDS DESCRIPTION COMMAND... : poll COMMAND until it succeeds or the deadline passes.
wait_for() {
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { log "timed out waiting for $what"; return 1; }
    sleep 0.2
  done
}

# one_at_a_time NAME: the rest of this script runs while no other start or stop of NAME (from any checkout or test
# session sharing this state directory) does. Two starts racing would launch two servers on one data directory.
# The lock is fd 9: a server this script launches must not inherit it (9>&-), or it would hold it for its life.
one_at_a_time() {
  mkdir -p "$OMS_STATE_DIR"
  exec 9>"$OMS_STATE_DIR/.$1.lock"
  flock 9
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# need_command CMD DEBIAN_PACKAGE: install the package with apt when the command is missing and we are root.
need_command() {
  command -v "$1" >/dev/null 2>&1 && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing $2 (for $1)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }
  fi
  command -v "$1" >/dev/null 2>&1 || die "$1 is needed: install $2"
}

# Kafka's SCRAM-SHA-512 users: one <name> per OMS_<NAME>_KAFKA_PASSWORD in dev.env with a one-word NAME (not the
# channels' and locations' OMS_CHANNEL_WEB_..., which `oms up` adds), its password from the environment. In KRaft they live in the cluster metadata, so the broker's own must be there before it first
# starts: `kafka-storage format` creates them all (kafka.sh, kafka/container-start.sh), one argument a line.
scram_user_names() { sed -n 's/^OMS_\([A-Z]*\)_KAFKA_PASSWORD=.*/\1/p' "$OMS_ROOT/deploy/dev.env"; }

scram_arguments() {
  local name variable
  for name in $(scram_user_names); do
    variable=OMS_${name}_KAFKA_PASSWORD
    printf '%s\n' --add-scram "SCRAM-SHA-512=[name=\"${name,,}\",password=\"${!variable}\"]"
  done
}

# need_promtool: prints the path of Prometheus's promtool (the alert rules' tests use it): on PATH, or unpacked
# once from Debian's prometheus package into the state directory. The package is not installed: it would start
# a Prometheus server; promtool alone is a static binary.
need_promtool() {
  local dir=$OMS_STATE_DIR/tools/prometheus tmp
  command -v promtool 2>/dev/null && return
  if [ ! -x "$dir/promtool" ]; then
    command -v apt-get >/dev/null && command -v dpkg >/dev/null || die "promtool is needed: install Prometheus"
    mkdir -p "$dir" && tmp=$(mktemp -d "$dir/.fetch.XXXXXX")
    log "fetching promtool (Debian's prometheus package, unpacked into $dir)"
    (cd "$tmp" && apt-get download -qq prometheus >/dev/null 2>&1) ||
      { [ "$(id -u)" = 0 ] && apt-get update -qq >/dev/null 2>&1 &&
        (cd "$tmp" && apt-get download -qq prometheus >/dev/null 2>&1); } ||
      { rm -rf "$tmp"; die "promtool is needed: could not download Debian's prometheus package"; }
    dpkg -x "$tmp"/prometheus_*.deb "$tmp/x" && mv -f "$tmp/x/usr/bin/promtool" "$dir/promtool"  # atomic: same fs
    rm -rf "$tmp"
  fi
  echo "$dir/promtool"
}
