#!/bin/sh
# The redis service's entrypoint (redis:7-alpine): writes redis.conf with the password read
# from REDIS_PASSWORD_FILE (a Docker secret), then hands over to the image's entrypoint, so
# the password is in no command line (`ps`) and in no environment variable.
#
# appendfsync always: an alert the worker has written is on disk before Redis answers, so a
# crash of Redis cannot lose alerts whose case state already marks them raised.
set -eu

REDIS_CONF=${REDIS_CONF:-/tmp/jiancha-redis/redis.conf}
REDIS_PORT=${REDIS_PORT:-6379}
REDIS_DATA_DIR=${REDIS_DATA_DIR:-/data}
REDIS_ENTRYPOINT=${REDIS_ENTRYPOINT:-docker-entrypoint.sh}

fail() {
    echo "jiancha-redis: $*" >&2
    exit 1
}

[ -n "${REDIS_PASSWORD_FILE:-}" ] || fail "REDIS_PASSWORD_FILE is not set (the path of a secret file)"
[ -f "$REDIS_PASSWORD_FILE" ] && [ -r "$REDIS_PASSWORD_FILE" ] || fail "REDIS_PASSWORD_FILE: cannot read $REDIS_PASSWORD_FILE"
password=$(cat "$REDIS_PASSWORD_FILE")
[ -n "$password" ] || fail "REDIS_PASSWORD_FILE: $REDIS_PASSWORD_FILE is empty"
# written unquoted into redis.conf
case $password in
    *[!A-Za-z0-9._~+-]*) fail "the Redis password may only contain letters, digits and . _ ~ + -" ;;
esac

mkdir -p "$(dirname "$REDIS_CONF")"
umask 077
cat > "$REDIS_CONF" <<CONF
# written by deploy/redis/start.sh
requirepass $password
port $REDIS_PORT
appendonly yes
appendfsync always
dir $REDIS_DATA_DIR
CONF
# the image's entrypoint drops to the redis user, who must read the file
if [ "$(id -u)" = 0 ] && id redis > /dev/null 2>&1; then
    chown -R redis "$(dirname "$REDIS_CONF")"
fi
exec "$REDIS_ENTRYPOINT" redis-server "$REDIS_CONF"
