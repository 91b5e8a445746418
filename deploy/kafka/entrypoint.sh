#!/usr/bin/env bash
# Single-node Apache Kafka in KRaft mode (broker + controller in one process) for the
# apache/kafka image: clients speak SASL_SSL with SCRAM-SHA-256, and every request is
# checked against the ACLs that kafka-init grants (deploy/kafka/acls.sh); nothing is allowed
# without an ACL except to the admin.
#
# The image's own start script cannot add SCRAM users at format time, and in KRaft mode the
# broker's inter-broker login needs its SCRAM credential in the metadata log before the
# broker starts, so this script writes server.properties itself, formats the log directory
# once with `kafka-storage.sh format --add-scram` for the admin (the only user made here: the
# others are made by kafka-init, deploy/kafka/users.sh), and then execs kafka-server-start.sh.
#
# Listeners:  INTERNAL  :9092   advertised as ${KAFKA_ADVERTISED_HOST}:9092          SASL_SSL
#             EXTERNAL  :19092  advertised as ${KAFKA_EXTERNAL_HOST}:${KAFKA_HOST_PORT}  SASL_SSL
#             CONTROLLER 127.0.0.1:9093, PLAINTEXT, never advertised: only this process
#             reaches it (its principal, ANONYMOUS, is therefore a super user)
#
# Files (Docker secrets): KAFKA_ADMIN_PASSWORD_FILE, KAFKA_KEYSTORE_FILE (PKCS12, the
# broker's key and certificate), KAFKA_KEYSTORE_PASSWORD_FILE, KAFKA_CA_FILE (PEM, the CA
# that signed the certificate: the broker's truststore for its own inter-broker login); all
# made by deploy/certs/make-certs.sh and deploy/make-secrets.sh.
#
# The admin's SCRAM credential exists from the first start on: changing its password later
# has no effect until the volume is dropped (`docker compose down -v`) or the user is altered
# with kafka-configs.sh (docs/operations.md).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"

: "${KAFKA_CLUSTER_ID:?set KAFKA_CLUSTER_ID (22 characters, e.g. from kafka-storage.sh random-uuid)}"
KAFKA_NODE_ID=${KAFKA_NODE_ID:-1}
KAFKA_DATA_DIR=${KAFKA_DATA_DIR:-/var/lib/kafka/data}
KAFKA_ADVERTISED_HOST=${KAFKA_ADVERTISED_HOST:-kafka}
KAFKA_EXTERNAL_HOST=${KAFKA_EXTERNAL_HOST:-localhost}
KAFKA_HOST_PORT=${KAFKA_HOST_PORT:-19092}
KAFKA_NUM_PARTITIONS=${KAFKA_NUM_PARTITIONS:-8}

[[ $KAFKA_CLUSTER_ID =~ ^[A-Za-z0-9_-]{22}$ ]] ||
    die "KAFKA_CLUSTER_ID must be 22 characters of URL-safe base64 (kafka-storage.sh random-uuid)"
check_credential KAFKA_ADMIN_USERNAME "$KAFKA_ADMIN_USERNAME"
admin_password=$(read_secret KAFKA_ADMIN_PASSWORD_FILE)
keystore_password=$(read_secret KAFKA_KEYSTORE_PASSWORD_FILE)
check_file KAFKA_KEYSTORE_FILE
check_file KAFKA_CA_FILE

mkdir -p "$JIANCHA_KAFKA_CONF_DIR" "$KAFKA_DATA_DIR"
server_properties=$JIANCHA_KAFKA_CONF_DIR/server.properties
admin_jaas=$(jaas_line "$KAFKA_ADMIN_USERNAME" "$admin_password")
(
    umask 077
    cat > "$server_properties" <<PROPERTIES
# written by deploy/kafka/entrypoint.sh at $(date -u +%Y-%m-%dT%H:%M:%SZ)
process.roles=broker,controller
node.id=${KAFKA_NODE_ID}
controller.quorum.voters=${KAFKA_NODE_ID}@127.0.0.1:9093
controller.listener.names=CONTROLLER
listeners=INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:19092,CONTROLLER://127.0.0.1:9093
advertised.listeners=INTERNAL://${KAFKA_ADVERTISED_HOST}:9092,EXTERNAL://${KAFKA_EXTERNAL_HOST}:${KAFKA_HOST_PORT}
listener.security.protocol.map=INTERNAL:${CLIENT_SECURITY_PROTOCOL},EXTERNAL:${CLIENT_SECURITY_PROTOCOL},CONTROLLER:PLAINTEXT
inter.broker.listener.name=INTERNAL
sasl.enabled.mechanisms=${SCRAM_MECHANISM}
sasl.mechanism.inter.broker.protocol=${SCRAM_MECHANISM}
listener.name.internal.scram-sha-256.sasl.jaas.config=${admin_jaas}
listener.name.external.scram-sha-256.sasl.jaas.config=${admin_jaas}
ssl.keystore.type=PKCS12
ssl.keystore.location=${KAFKA_KEYSTORE_FILE}
ssl.keystore.password=${keystore_password}
ssl.key.password=${keystore_password}
ssl.truststore.type=PEM
ssl.truststore.location=${KAFKA_CA_FILE}
ssl.client.auth=none
ssl.endpoint.identification.algorithm=https
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:${KAFKA_ADMIN_USERNAME};User:ANONYMOUS
log.dirs=${KAFKA_DATA_DIR}
num.partitions=${KAFKA_NUM_PARTITIONS}
auto.create.topics.enable=false
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
    "$KAFKA_ADMIN_USERNAME" "$admin_password"

if [[ -f $KAFKA_DATA_DIR/meta.properties ]]; then
    echo "jiancha-kafka: $KAFKA_DATA_DIR is already formatted; keeping its SCRAM users"
else
    echo "jiancha-kafka: formatting $KAFKA_DATA_DIR (cluster $KAFKA_CLUSTER_ID) with the SCRAM user" \
        "$KAFKA_ADMIN_USERNAME"
    # kafka-storage.sh takes the credential only as an argument: this one-off process runs
    # inside the broker's container, whose server.properties holds the same password
    "$KAFKA_HOME/bin/kafka-storage.sh" format \
        --config "$server_properties" \
        --cluster-id "$KAFKA_CLUSTER_ID" \
        --ignore-formatted \
        --add-scram "${SCRAM_MECHANISM}=[name=${KAFKA_ADMIN_USERNAME},iterations=${SCRAM_ITERATIONS},password=${admin_password}]"
fi

exec "$KAFKA_HOME/bin/kafka-server-start.sh" "$server_properties"
