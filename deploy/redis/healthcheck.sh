#!/bin/sh
# Redis is healthy once it answers PING to the password in REDIS_PASSWORD_FILE; redis-cli
# takes it from REDISCLI_AUTH, set for this process only (not on its command line).
set -eu
REDISCLI_AUTH=$(cat "$REDIS_PASSWORD_FILE")
export REDISCLI_AUTH
redis-cli -p "${REDIS_PORT:-6379}" ping | grep -q PONG
