#!/usr/bin/env bash
# Entry point of the apache/kafka image under docker-compose and testcontainers (the project mounted at /oms):
# formats the storage with the SCRAM users of deploy/dev.env, as deploy/kafka.sh does, then runs the image's own
# start script, which finds the storage formatted and configures the broker from the KAFKA_* variables.
set -euo pipefail
. /oms/deploy/lib.sh

properties=$(mktemp)
cat >"$properties" <<PROPERTIES
process.roles=broker,controller
node.id=$KAFKA_NODE_ID
controller.quorum.voters=$KAFKA_CONTROLLER_QUORUM_VOTERS
controller.listener.names=CONTROLLER
listeners=CONTROLLER://:9093
listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT
log.dirs=$KAFKA_LOG_DIRS
PROPERTIES
mapfile -t users < <(scram_arguments)
/opt/kafka/bin/kafka-storage.sh format --ignore-formatted -t "$CLUSTER_ID" -c "$properties" "${users[@]}"
exec /etc/kafka/docker/run
