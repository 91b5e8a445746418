#!/usr/bin/env bash
# The secrets of the compose deployment, made at random into a directory (default
# deploy/secrets/, which git ignores); a file that exists is kept, so running it again only
# adds what is missing (e.g. after a department was added to deploy/kafka/departments.txt).
#
#   kafka-admin.password       Kafka's admin (broker login, kafka-init)
#   kafka-worker.password      the worker's Kafka principal
#   kafka-simulator.password   the simulator's Kafka principal
#   kafka-department.passwords "<code> <password>" for each department's Kafka principal
#   redis.password             Redis (requirepass)
#   grafana-admin.password     Grafana's admin
#   department-keys.yaml       each department's HMAC-SHA256 signing key (the worker's keyring)
#   notifier-tokens.yaml       the notifier's API tokens: the bureau's, stored as its sha256
#   bureau.token               that token itself, for the operator (mode 600, never mounted)
#
# Then deploy/certs/make-certs.sh for the TLS files, and `cp deploy/.env.example .env`.
# Files are readable by all (the containers run as other users and read them through bind
# mounts) in a directory only its owner may enter; docs/operations.md says how each secret is
# handed to a department and rotated.
set -euo pipefail

deploy=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:-$deploy/secrets}
departments=${KAFKA_DEPARTMENTS_FILE:-$deploy/kafka/departments.txt}
command -v openssl > /dev/null || { echo "make-secrets: openssl is not on PATH" >&2; exit 1; }

mkdir -p "$out"
chmod 700 "$out"
cd "$out"
umask 022

secret() { openssl rand -hex "${1:-24}"; }

codes=()
while IFS= read -r line || [[ -n $line ]]; do
    code=${line%%#*}
    code=${code//[[:space:]]/}
    [[ -n $code ]] && codes+=("$code")
done < "$departments"

for name in kafka-admin kafka-worker kafka-simulator redis grafana-admin; do
    [[ -s $name.password ]] || secret > "$name.password"
done

touch kafka-department.passwords department-keys.yaml
for code in "${codes[@]}"; do
    grep -q "^$code " kafka-department.passwords || echo "$code $(secret)" >> kafka-department.passwords
    grep -q "^$code:" department-keys.yaml || echo "$code: hex:$(secret 32)" >> department-keys.yaml
done

if [[ ! -s notifier-tokens.yaml ]]; then
    token=$(secret 32)
    (umask 077 && printf '%s\n' "$token" > bureau.token)
    digest=$(printf '%s' "$token" | openssl dgst -sha256 -r | cut -d' ' -f1)
    cat > notifier-tokens.yaml <<YAML
# the notifier's API tokens (docs/notifications.md); department tokens are added by hand
tokens:
  - name: bureau-duty
    role: bureau
    token_sha256: $digest
YAML
fi
chmod 644 ./*.password kafka-department.passwords department-keys.yaml notifier-tokens.yaml
echo "make-secrets: secrets in $out (the bureau's notifier token is in $out/bureau.token)"
