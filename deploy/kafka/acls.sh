#!/usr/bin/env bash
# One-shot, idempotent: the ACLs of the jiancha principals (adding an ACL that exists changes
# nothing). The broker denies whatever no ACL allows (allow.everyone.if.no.acl.found=false);
# the admin is a super user and needs none. Run by kafka-init after users.sh.
#
#   dept-<code>, the simulator   WRITE approval-events, complaints                  (nothing else)
#   the worker                   READ  approval-events, complaints; group <app_id>
#                                WRITE approval-events.dlq, complaints.dlq
#                                READ, WRITE, CREATE topics prefixed '<app_id>-' (Faust's
#                                changelogs, e.g. <app_id>-cases-changelog, its repartition
#                                and leader topics)
#                                CREATE the four topics above: Faust declares every topic it
#                                uses at start; they exist already, so this creates nothing
#
# WRITE and READ imply DESCRIBE (metadata); no principal but the worker reads anything. A
# department removed from KAFKA_DEPARTMENTS_FILE keeps its ACLs until they are removed
# (kafka-acls.sh --remove --principal User:dept-<code>, docs/operations.md).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"
# shellcheck source=principals.sh
. "$here/principals.sh"

KAFKA_BOOTSTRAP=${KAFKA_BOOTSTRAP:-kafka:9092}
KAFKA_APP_ID=${KAFKA_APP_ID:-jiancha}
EVENTS_TOPIC=${EVENTS_TOPIC:-approval-events}
COMPLAINTS_TOPIC=${COMPLAINTS_TOPIC:-complaints}
EVENTS_DLQ_TOPIC=${EVENTS_DLQ_TOPIC:-approval-events.dlq}
COMPLAINTS_DLQ_TOPIC=${COMPLAINTS_DLQ_TOPIC:-complaints.dlq}
export KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xmx256m}

[[ $KAFKA_APP_ID =~ ^[A-Za-z0-9._-]+$ ]] || die "KAFKA_APP_ID must match JIANCHA_APP_ID ([A-Za-z0-9._-]+)"
check_credential KAFKA_ADMIN_USERNAME "$KAFKA_ADMIN_USERNAME"
make_admin_client_properties

allow() { # PRINCIPAL RESOURCE-OPTIONS... -- OPERATIONS...
    local principal=$1 resource=() operations=()
    shift
    while [[ $1 != -- ]]; do
        resource+=("$1")
        shift
    done
    shift
    for op in "$@"; do
        operations+=(--operation "$op")
    done
    "$KAFKA_HOME/bin/kafka-acls.sh" --bootstrap-server "$KAFKA_BOOTSTRAP" \
        --command-config "$ADMIN_PROPS" --add --allow-principal "User:$principal" \
        "${operations[@]}" "${resource[@]}" > /dev/null
}

producer() { # PRINCIPAL: may write the two input topics, nothing else
    allow "$1" --topic "$EVENTS_TOPIC" -- Write
    allow "$1" --topic "$COMPLAINTS_TOPIC" -- Write
    echo "jiancha-kafka: $1 may write $EVENTS_TOPIC and $COMPLAINTS_TOPIC"
}

for code in "${DEPARTMENTS[@]}"; do
    producer "$(department_principal "$code")"
done
producer "$KAFKA_SIMULATOR_USERNAME"

worker=$KAFKA_WORKER_USERNAME
allow "$worker" --topic "$EVENTS_TOPIC" -- Read Create
allow "$worker" --topic "$COMPLAINTS_TOPIC" -- Read Create
allow "$worker" --topic "$EVENTS_DLQ_TOPIC" -- Write Create
allow "$worker" --topic "$COMPLAINTS_DLQ_TOPIC" -- Write Create
allow "$worker" --topic "$KAFKA_APP_ID-" --resource-pattern-type prefixed -- Read Write Create
allow "$worker" --group "$KAFKA_APP_ID" -- Read
echo "jiancha-kafka: $worker reads $EVENTS_TOPIC and $COMPLAINTS_TOPIC as group $KAFKA_APP_ID," \
    "writes the dead letters and the $KAFKA_APP_ID-* topics"
