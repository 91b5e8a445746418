#!/usr/bin/env bash
# Kafka is healthy once the INTERNAL listener authenticates the admin user with SCRAM and
# answers an ApiVersions request.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"
# The healthcheck inherits the broker's environment: keep this JVM small and free of the
# broker's options (a JMX port in KAFKA_OPTS would clash).
export KAFKA_HEAP_OPTS="-Xmx128m" KAFKA_OPTS="" KAFKA_JMX_OPTS="" JMX_PORT=""
exec "$KAFKA_HOME/bin/kafka-broker-api-versions.sh" \
    --bootstrap-server localhost:9092 \
    --command-config "$JIANCHA_KAFKA_CONF_DIR/admin-client.properties" > /dev/null
