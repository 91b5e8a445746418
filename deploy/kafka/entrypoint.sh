#!/usr/bin/env bash
# Single-node Apache Kafka in KRaft mode (broker + controller in one process) whose client
# listeners speak SASL_PLAINTEXT with SCRAM-SHA-256, for the apache/kafka image.
#
# The image's own start script cannot add SCRAM users at format time, and in KRaft mode the
# broker's inter-broker login needs its SCRAM credential in the metadata log before the
# broker starts, so this script writes server.properties itself, formats the log directory
# once with `kafka-storage.sh format --add-scram` for the admin and the application user,
# and then execs kafka-server-start.sh.
#
# Listeners:  INTERNAL  :9092   advertised as ${KAFKA_ADVERTISED_HOST}:9092  (compose network)
#             EXTERNAL  :19092  advertised as localhost:${KAFKA_HOST_PORT}   (the host)
#             CONTROLLER 127.0.0.1:9093, PLAINTEXT, never advertised
#
# SCRAM users exist from the first start on: changing a password in .env later has no
# effect until the volume is dropped (`docker compose down -v`) or the user is altered with
# kafka-configs.sh --alter --add-config 'SCRAM-SHA-256=[password=…]'.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"

: "${KAFKA_CLUSTER_ID:?set KAFKA_CLUSTER_ID (22 characters, e.g. from kafka-storage.sh random-uuid)}"
KAFKA_NODE_ID=${KAFKA_NODE_ID:-1}
KAFKA_DATA_DIR=${KAFKA_DATA_DIR:-/var/lib/kafka/data}
KAFKA_ADVERTISED_HOST=${KAFKA_ADVERTISED_HOST:-kafka}
KAFKA_HOST_PORT=${KAFKA_HOST_PORT:-19092}
KAFKA_NUM_PARTITIONS=${KAFKA_NUM_PARTITIONS:-8}

[[ $KAFKA_CLUSTER_ID =~ ^[A-Za-z0-9_-]{22}$ ]] ||
    die "KAFKA_CLUSTER_ID must be 22 characters of URL-safe base64 (kafka-storage.sh random-uuid)"
check_credential KAFKA_ADMIN_USERNAME "$KAFKA_ADMIN_USERNAME"
check_credential KAFKA_ADMIN_PASSWORD "${KAFKA_ADMIN_PASSWORD:-}"
check_credential KAFKA_USERNAME "$KAFKA_USERNAME"
check_credential KAFKA_PASSWORD "${KAFKA_PASSWORD:-}"
[[ $KAFKA_ADMIN_USERNAME != "$KAFKA_USERNAME" ]] || die "KAFKA_ADMIN_USERNAME and KAFKA_USERNAME must differ"

mkdir -p "$JIANCHA_KAFKA_CONF_DIR" "$KAFKA_DATA_DIR"
server_properties=$JIANCHA_KAFKA_CONF_DIR/server.properties
admin_jaas=$(jaas_line "$KAFKA_ADMIN_USERNAME" "$KAFKA_ADMIN_PASSWORD")
(
    umask 077
    cat > "$server_properties" <<PROPERTIES
# written by deploy/kafka/entrypoint.sh at $(date -u +%Y-%m-%dT%H:%M:%SZ)
process.roles=broker,controller
node.id=${KAFKA_NODE_ID}
controller.quorum.voters=${KAFKA_NODE_ID}@127.0.0.1:9093
controller.listener.names=CONTROLLER
listeners=INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:19092,CONTROLLER://127.0.0.1:9093
advertised.listeners=INTERNAL://${KAFKA_ADVERTISED_HOST}:9092,EXTERNAL://localhost:${KAFKA_HOST_PORT}
listener.security.protocol.map=INTERNAL:SASL_PLAINTEXT,EXTERNAL:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=INTERNAL
sasl.enabled.mechanisms=${SCRAM_MECHANISM}
sasl.mechanism.inter.broker.protocol=${SCRAM_MECHANISM}
listener.name.internal.scram-sha-256.sasl.jaas.config=${admin_jaas}
listener.name.external.scram-sha-256.sasl.jaas.config=${admin_jaas}
log.dirs=${KAFKA_DATA_DIR}
num.partitions=${KAFKA_NUM_PARTITIONS}
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=168
PROPERTIES
)
write_client_properties "$JIANCHA_KAFKA_CONF_DIR/admin-client.properties" \
    "$KAFKA_ADMIN_USERNAME" "$KAFKA_ADMIN_PASSWORD"

if [[ -f $KAFKA_DATA_DIR/meta.properties ]]; then
    echo "jiancha-kafka: $KAFKA_DATA_DIR is already formatted; keeping its SCRAM users"
else
    echo "jiancha-kafka: formatting $KAFKA_DATA_DIR (cluster $KAFKA_CLUSTER_ID) with SCRAM users" \
        "$KAFKA_ADMIN_USERNAME, $KAFKA_USERNAME"
    "$KAFKA_HOME/bin/kafka-storage.sh" format \
        --config "$server_properties" \
        --cluster-id "$KAFKA_CLUSTER_ID" \
        --ignore-formatted \
        --add-scram "${SCRAM_MECHANISM}=[name=${KAFKA_ADMIN_USERNAME},password=${KAFKA_ADMIN_PASSWORD}]" \
        --add-scram "${SCRAM_MECHANISM}=[name=${KAFKA_USERNAME},password=${KAFKA_PASSWORD}]"
fi

exec "$KAFKA_HOME/bin/kafka-server-start.sh" "$server_properties"
