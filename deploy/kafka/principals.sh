# The jiancha principals (sourced by users.sh and acls.sh after common.sh, not run).
#
# KAFKA_DEPARTMENTS_FILE lists the department codes, one a line ('#' starts a comment); it is
# the catalog's list (rules/catalog/*.yaml, checked by tests/integration/test_compose.py).
# Department <code> logs in as dept-<code>.

KAFKA_DEPARTMENTS_FILE=${KAFKA_DEPARTMENTS_FILE:-$here/departments.txt}
KAFKA_WORKER_USERNAME=${KAFKA_WORKER_USERNAME:-jiancha-worker}
KAFKA_SIMULATOR_USERNAME=${KAFKA_SIMULATOR_USERNAME:-jiancha-simulator}
DEPARTMENT_PRINCIPAL_PREFIX=dept-

check_credential KAFKA_WORKER_USERNAME "$KAFKA_WORKER_USERNAME"
check_credential KAFKA_SIMULATOR_USERNAME "$KAFKA_SIMULATOR_USERNAME"
names=("$KAFKA_ADMIN_USERNAME" "$KAFKA_WORKER_USERNAME" "$KAFKA_SIMULATOR_USERNAME")
[[ $(printf '%s\n' "${names[@]}" | sort -u | wc -l) -eq 3 ]] ||
    die "KAFKA_ADMIN_USERNAME, KAFKA_WORKER_USERNAME and KAFKA_SIMULATOR_USERNAME must differ"

check_file KAFKA_DEPARTMENTS_FILE
DEPARTMENTS=()
while IFS= read -r line || [[ -n $line ]]; do
    code=${line%%#*}
    code=${code//[[:space:]]/}
    [[ -n $code ]] || continue
    check_credential "department code '$code' in $KAFKA_DEPARTMENTS_FILE" "$code"
    DEPARTMENTS+=("$code")
done < "$KAFKA_DEPARTMENTS_FILE"
[[ ${#DEPARTMENTS[@]} -gt 0 ]] || die "$KAFKA_DEPARTMENTS_FILE lists no department"

is_department() { # CODE
    local code
    for code in "${DEPARTMENTS[@]}"; do
        [[ $code == "$1" ]] && return 0
    done
    return 1
}

department_principal() { # CODE
    printf '%s%s' "$DEPARTMENT_PRINCIPAL_PREFIX" "$1"
}
