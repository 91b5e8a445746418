#!/usr/bin/env bash
# One-shot, idempotent: give every jiancha principal its SCRAM-SHA-256 credential (made, or
# its password replaced by the one in its file). Run by kafka-init after create-topics.sh.
#
#   the worker      KAFKA_WORKER_USERNAME     password in KAFKA_WORKER_PASSWORD_FILE
#   the simulator   KAFKA_SIMULATOR_USERNAME  password in KAFKA_SIMULATOR_PASSWORD_FILE
#   each department dept-<code>               "<code> <password>" lines in KAFKA_DEPARTMENT_PASSWORDS_FILE
#
# A department listed in KAFKA_DEPARTMENTS_FILE without a password line gets no user (it
# cannot log in) until one is added and kafka-init runs again (docs/operations.md). The
# passwords go to kafka-configs.sh in a file (--add-config-file), never on its command line.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"
# shellcheck source=principals.sh
. "$here/principals.sh"

KAFKA_BOOTSTRAP=${KAFKA_BOOTSTRAP:-kafka:9092}
export KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xmx256m}

check_credential KAFKA_ADMIN_USERNAME "$KAFKA_ADMIN_USERNAME"
make_admin_client_properties
credential=$(mktemp)
# shellcheck disable=SC2064  # expanded now
trap "rm -f '$ADMIN_PROPS' '$credential'" EXIT

set_scram() { # USER PASSWORD
    check_credential "password of $1" "$2"
    (umask 077 && printf '%s=iterations=%s,password=%s\n' \
        "$SCRAM_MECHANISM" "$SCRAM_ITERATIONS" "$2" > "$credential")
    "$KAFKA_HOME/bin/kafka-configs.sh" --bootstrap-server "$KAFKA_BOOTSTRAP" \
        --command-config "$ADMIN_PROPS" --alter --entity-type users --entity-name "$1" \
        --add-config-file "$credential" > /dev/null
    : > "$credential"
    echo "jiancha-kafka: SCRAM user $1 ready"
}

worker_password=$(read_secret KAFKA_WORKER_PASSWORD_FILE)
simulator_password=$(read_secret KAFKA_SIMULATOR_PASSWORD_FILE)
set_scram "$KAFKA_WORKER_USERNAME" "$worker_password"
set_scram "$KAFKA_SIMULATOR_USERNAME" "$simulator_password"

check_file KAFKA_DEPARTMENT_PASSWORDS_FILE
declare -A department_password=()
line_no=0
while IFS= read -r line || [[ -n $line ]]; do
    line_no=$((line_no + 1))
    [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
    read -r code password extra <<< "$line"
    [[ -n ${password:-} && -z ${extra:-} ]] ||
        die "KAFKA_DEPARTMENT_PASSWORDS_FILE line $line_no: want '<department code> <password>'"
    is_department "$code" ||
        die "KAFKA_DEPARTMENT_PASSWORDS_FILE line $line_no: $code is not in KAFKA_DEPARTMENTS_FILE"
    department_password[$code]=$password
done < "$KAFKA_DEPARTMENT_PASSWORDS_FILE"

for code in "${DEPARTMENTS[@]}"; do
    if [[ -n ${department_password[$code]:-} ]]; then
        set_scram "$(department_principal "$code")" "${department_password[$code]}"
    else
        echo "jiancha-kafka: warning: department $code has no password line; it cannot log in" >&2
    fi
done
