#!/usr/bin/env bash
# One-shot: create jiancha's topics (idempotent), grow any that has fewer partitions than
# asked, print them, exit 0. Run by the `kafka-init` compose service once Kafka is healthy.
#
# KAFKA_TOPICS="name:partitions[,name:partitions…]"
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"

KAFKA_BOOTSTRAP=${KAFKA_BOOTSTRAP:-kafka:9092}
KAFKA_TOPICS=${KAFKA_TOPICS:-approval-events:8,approval-events.dlq:8,complaints:8,complaints.dlq:8}
KAFKA_REPLICATION_FACTOR=${KAFKA_REPLICATION_FACTOR:-1}
export KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xmx256m}

check_credential KAFKA_ADMIN_USERNAME "$KAFKA_ADMIN_USERNAME"
make_admin_client_properties

topics() {
    "$KAFKA_HOME/bin/kafka-topics.sh" --bootstrap-server "$KAFKA_BOOTSTRAP" --command-config "$ADMIN_PROPS" "$@"
}

partition_count() { # TOPIC -> number of partitions, empty when the topic does not exist
    { topics --describe --topic "$1" 2> /dev/null || true; } |
        sed -n 's/.*PartitionCount: *\([0-9][0-9]*\).*/\1/p' | head -n 1
}

IFS=',' read -r -a specs <<< "$KAFKA_TOPICS"
for spec in "${specs[@]}"; do
    spec=${spec//[[:space:]]/}
    [[ -n $spec ]] || continue
    name=${spec%%:*}
    want=${spec##*:}
    [[ $name != "$spec" && $want =~ ^[1-9][0-9]*$ ]] || die "bad KAFKA_TOPICS entry '$spec' (want name:partitions)"
    for attempt in 1 2 3 4 5; do
        if topics --create --if-not-exists --topic "$name" --partitions "$want" \
            --replication-factor "$KAFKA_REPLICATION_FACTOR"; then
            break
        fi
        [[ $attempt -lt 5 ]] || die "could not create topic $name"
        echo "jiancha-kafka: creating $name failed, retrying in 3 s" >&2
        sleep 3
    done
    have=$(partition_count "$name")
    [[ -n $have ]] || die "topic $name does not exist after creation"
    if ((have < want)); then
        echo "jiancha-kafka: $name has $have partitions, growing it to $want"
        topics --alter --topic "$name" --partitions "$want"
    elif ((have > want)); then
        echo "jiancha-kafka: warning: $name has $have partitions, more than the $want asked (Kafka cannot shrink)" >&2
    fi
    echo "jiancha-kafka: topic $name ready with $(partition_count "$name") partitions"
done
