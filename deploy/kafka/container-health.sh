#!/usr/bin/env bash
# Health check of the apache/kafka container: the broker answers ops (a super user) on its client listener.
set -euo pipefail
config=$(mktemp)
trap 'rm -f "$config"' EXIT
cat >"$config" <<PROPERTIES
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="ops" password="$OMS_OPS_KAFKA_PASSWORD";
PROPERTIES
/opt/kafka/bin/kafka-broker-api-versions.sh --bootstrap-server localhost:9092 --command-config "$config" >/dev/null
