#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft) on loopback: jars from Maven Central, run on the machine's Java.
# Usage: deploy/kafka.sh start|stop|status   (idempotent; start waits until the broker answers)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$OMS_ROOT/deploy/kafka/pom.xml")
HOME_DIR=$OMS_STATE_DIR/kafka
LIBS=$HOME_DIR/libs-$KAFKA_VERSION
DATA=$HOME_DIR/data
METADATA_LOG=$DATA/__cluster_metadata-0
LOGS=$HOME_DIR/logs
PIDFILE=$HOME_DIR/kafka.pid
CONFIG=$HOME_DIR/server.properties
# What the storage was formatted with (its SCRAM users); a cluster formatted otherwise is formatted again.
CREDENTIALS_MARKER=$HOME_DIR/scram-users.sha256
# OMS_KAFKA_TLS=1: the dev CA and the broker's key and certificate, made once and kept.
TLS_DIR=$HOME_DIR/tls

fetch_jars() {
  [ -f "$LIBS/.complete" ] && return
  need_command mvn maven
  log "fetching Kafka $KAFKA_VERSION jars from Maven Central"
  rm -rf "$LIBS"
  mvn -q -B -Dstyle.color=never -f "$OMS_ROOT/deploy/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$LIBS" -DincludeScope=runtime
  touch "$LIBS/.complete"
}

# sed replacement text: \, | and & are special there.
sed_escape() { printf '%s' "$1" | sed -e 's/[\\|&]/\\&/g'; }

# quietly COMMAND...: its chatter only if it fails.
quietly() { local out; out=$("$@" 2>&1) || { printf '%s\n' "$out" >&2; return 1; }; }

tls_enabled() { [ "${OMS_KAFKA_TLS:-0}" = 1 ]; }
client_protocol() { if tls_enabled; then echo SASL_SSL; else echo SASL_PLAINTEXT; fi; }

# A dev CA (its key stays here) and a certificate for 127.0.0.1 and localhost that it signs: what a client
# verifies the broker by (OMS_KAFKA_CA_FILE). Made in a scratch directory and moved into place whole.
make_dev_ca() {
  [ -f "$TLS_DIR/broker.pem" ] && return
  need_command openssl openssl
  log "making a dev CA and the broker's certificate for 127.0.0.1/localhost in $TLS_DIR"
  local scratch=$TLS_DIR.partial
  rm -rf "$scratch"
  (umask 077
   mkdir -p "$scratch" && cd "$scratch"
   quietly openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt \
     -days 3650 -subj "/CN=oms dev CA" -addext "basicConstraints=critical,CA:TRUE" \
     -addext "keyUsage=critical,keyCertSign,cRLSign"
   quietly openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout broker.key \
     -out broker.csr -subj "/CN=localhost"
   printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
     "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" "subjectKeyIdentifier=hash" \
     "authorityKeyIdentifier=keyid" >broker.ext
   quietly openssl x509 -req -in broker.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
     -extfile broker.ext -out broker.crt
   cat broker.key broker.crt >broker.pem  # a PEM key store: the key, then its certificate
   rm broker.key broker.csr broker.ext
   chmod 644 ca.crt)  # public: every client needs it
  chmod 755 "$scratch"
  mv "$scratch" "$TLS_DIR"
}

write_config() {
  mkdir -p "$DATA" "$LOGS"
  (umask 077  # it holds the broker's password
   sed -e "s|@PORT@|$OMS_KAFKA_PORT|g" -e "s|@CONTROLLER_PORT@|$OMS_KAFKA_CONTROLLER_PORT|g" \
       -e "s|@DATA_DIR@|$(sed_escape "$DATA")|g" -e "s|@BROKER_PASSWORD@|$(sed_escape "$OMS_BROKER_KAFKA_PASSWORD")|g" \
       -e "s|@CLIENT_PROTOCOL@|$(client_protocol)|g" "$OMS_ROOT/deploy/kafka/server.properties.in" >"$CONFIG"
   if tls_enabled; then
     sed -e "s|@TLS_DIR@|$(sed_escape "$TLS_DIR")|g" "$OMS_ROOT/deploy/kafka/tls.properties.in" >>"$CONFIG"
   fi)
}

java_run() {
  java -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$OMS_ROOT/deploy/kafka/log4j2.properties" -Dkafka.logs.dir="$LOGS" \
    -cp "$LIBS/*" "$@"
}

# Restarts replay the metadata from its latest snapshot (server.properties.in: why), which every start since
# snapshots were configured waits for.
has_metadata_snapshot() { compgen -G "$METADATA_LOG/*.checkpoint" >/dev/null; }

# A metadata log without a snapshot, holding a SCRAM user's removal: replayed from its start, it may come up
# without any SCRAM user (server.properties.in), and that loss would be snapshotted for good seconds later.
replay_may_lose_users() {
  has_metadata_snapshot && return 1
  local -a segments=("$METADATA_LOG"/*.log)
  [ -e "${segments[0]}" ] || return 1
  java_run kafka.tools.DumpLogSegments --cluster-metadata-decoder --files "$(IFS=,; echo "${segments[*]}")" |
    awk '/REMOVE_USER_SCRAM_CREDENTIAL_RECORD/ { found = 1 } END { exit !found }'  # reads it all: no SIGPIPE
}

format_storage() {
  local -a users; mapfile -t users < <(scram_arguments)
  local fingerprint; fingerprint=$(printf '%s\n' "${users[@]}" | sha256sum | cut -c1-64)
  if [ -f "$DATA/meta.properties" ]; then
    if [ "$(cat "$CREDENTIALS_MARKER" 2>/dev/null)" != "$fingerprint" ]; then
      log "the Kafka storage in $DATA was formatted without the current SCRAM users: formatting it again" \
          "(every topic and message of this dev cluster is lost)"
    elif replay_may_lose_users; then
      log "the Kafka storage in $DATA removed SCRAM users before it had a metadata snapshot, so a restart" \
          "may lose every user: formatting it again (every topic and message of this dev cluster is lost)"
    else
      return 0
    fi
    find "$DATA" -mindepth 1 -delete
  fi
  log "formatting KRaft storage in $DATA with SCRAM users: $(scram_user_names | tr 'A-Z\n' 'a-z ')"
  local cluster_id
  cluster_id=$(java_run kafka.tools.StorageTool random-uuid)
  java_run kafka.tools.StorageTool format -t "$cluster_id" -c "$CONFIG" "${users[@]}" >"$LOGS/format.log"
  (umask 077; echo "$fingerprint" >"$CREDENTIALS_MARKER")
}

broker_ready() {
  port_open "$OMS_KAFKA_PORT" && grep -q "Kafka Server started" "$LOGS/server.log"
}

start() {
  if pid_alive "$PIDFILE"; then log "kafka already running (pid $(cat "$PIDFILE"))"; return; fi
  need_command java openjdk-17-jre-headless
  for port in "$OMS_KAFKA_PORT" "$OMS_KAFKA_CONTROLLER_PORT"; do
    port_open "$port" && die "port $port is taken by another server (another checkout's? stop it, or set OMS_KAFKA_PORT)"
  done
  fetch_jars
  if tls_enabled; then make_dev_ca; fi
  write_config
  format_storage
  : >"$LOGS/server.log"
  log "starting kafka $KAFKA_VERSION on 127.0.0.1:$OMS_KAFKA_PORT ($(client_protocol))"
  nohup bash -c "$(declare -f java_run); LIBS='$LIBS' LOGS='$LOGS' OMS_ROOT='$OMS_ROOT' java_run kafka.Kafka '$CONFIG'" \
    >"$LOGS/console.log" 2>&1 </dev/null 9>&- &  # the broker must not hold our lock
  echo $! >"$PIDFILE"
  wait_for 120 "kafka to start (see $LOGS)" broker_ready || { tail -20 "$LOGS/console.log" >&2; exit 1; }
  wait_for 60 "kafka's first metadata snapshot (see $LOGS)" has_metadata_snapshot || exit 1
  log "kafka ready"
}

stop() {
  pid_alive "$PIDFILE" || { rm -f "$PIDFILE"; log "kafka not running"; return; }
  local pid pids; pid=$(cat "$PIDFILE")
  # The pid file names the bash wrapper; the JVM is its child and shuts down for seconds after the wrapper is
  # gone, still holding the ports. Stopped means both are gone, or a start right after finds the ports taken.
  pids="$pid $(pgrep -P "$pid" | tr '\n' ' ')"
  kill -TERM $pids 2>/dev/null || true
  wait_for 60 "kafka to stop" bash -c "! kill -0 $pids 2>/dev/null" ||
    kill -KILL $pids 2>/dev/null || true
  rm -f "$PIDFILE"
  log "kafka stopped"
}

status() {
  if pid_alive "$PIDFILE" && broker_ready; then echo "kafka: running on 127.0.0.1:$OMS_KAFKA_PORT (pid $(cat "$PIDFILE"))"
  else echo "kafka: stopped"; return 3; fi
}

case ${1:-} in
  start) one_at_a_time kafka; start ;; stop) one_at_a_time kafka; stop ;; status) status ;; fetch) fetch_jars ;;
  *) echo "usage: $0 start|stop|status|fetch" >&2; exit 2 ;;
esac
