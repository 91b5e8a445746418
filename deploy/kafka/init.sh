#!/usr/bin/env bash
# The kafka-init service: topics, SCRAM users, ACLs, in this order; each step is idempotent,
# so running it again (`docker compose up kafka-init`) applies a changed password file or
# department list.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bash "$here/create-topics.sh"
bash "$here/users.sh"
bash "$here/acls.sh"
