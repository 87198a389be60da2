#!/bin/bash
# Run kittenfs in the container: `master`, `worker` (the first argument, else $KITTENFS_ROLE),
# or any other kittenfs command (`status`, `rebuild`, ...) as it is.
#
# A worker claims the first free slot K (0, 1, ...) of the data volume, which any number of
# worker containers may share: it holds the lock $KITTENFS_DATA/worker-K.lock for as long as
# it runs, keeps its data in $KITTENFS_DATA/worker-K, listens on $KITTENFS_PORT + K, and
# advertises $KITTENFS_ADVERTISE with "{port}" replaced by that port. So `--scale worker=N`
# on the host's network needs no port or name per worker, and a restarted or recreated
# container takes up a slot again with its data, index and URL, whichever container ran it.
set -euo pipefail

die() { echo "kittenfs-entrypoint: $*" >&2; exit 2; }

[ "${1:-}" = kittenfs ] && shift  # `IMAGE kittenfs worker` too
role=${1:-${KITTENFS_ROLE:-}}
[ $# -gt 0 ] && shift
#: Slots a worker may claim (workers sharing one volume).
slots=${KITTENFS_SLOTS:-64}
unset KITTENFS_ROLE KITTENFS_SLOTS

# Docker's *_FILE convention for the secret that has no file flag: the token's file.
if [ -n "${KITTENFS_ADMIN_TOKEN_FILE:-}" ]; then
    KITTENFS_ADMIN_TOKEN=$(<"$KITTENFS_ADMIN_TOKEN_FILE") \
        || die "KITTENFS_ADMIN_TOKEN_FILE=$KITTENFS_ADMIN_TOKEN_FILE cannot be read"
    export KITTENFS_ADMIN_TOKEN
fi
unset KITTENFS_ADMIN_TOKEN_FILE

claim_slot() {
    local base=$1 slot
    [[ $base =~ ^[0-9]+$ && $base -gt 0 ]] \
        || die "KITTENFS_PORT=$base: a worker in a container needs a fixed port (slot K adds K)"
    mkdir -p "$KITTENFS_DATA"
    for ((slot = 0; slot < slots; slot++)); do
        # The descriptor stays open in kittenfs after exec, and with it the lock.
        exec 9>>"$KITTENFS_DATA/worker-$slot.lock"
        if flock -n 9; then
            export KITTENFS_DATA=$KITTENFS_DATA/worker-$slot
            export KITTENFS_PORT=$((base + slot))
            if [ -n "${KITTENFS_ADVERTISE:-}" ]; then
                export KITTENFS_ADVERTISE=${KITTENFS_ADVERTISE//\{port\}/$KITTENFS_PORT}
            fi
            echo "kittenfs-entrypoint: worker slot $slot: data $KITTENFS_DATA," \
                "port $KITTENFS_PORT" >&2
            return
        fi
        exec 9>&-
    done
    die "all $slots worker slots of $KITTENFS_DATA are taken (set KITTENFS_SLOTS)"
}

case $role in
    master) export KITTENFS_PORT=${KITTENFS_PORT:-3000} ;;
    worker) claim_slot "${KITTENFS_PORT:-3001}" ;;
    "") die "say which role: master or worker (the command, or KITTENFS_ROLE)" ;;
    *) exec kittenfs "$role" "$@" ;;
esac

# What the HEALTHCHECK asks for /health.
scheme=http
[ -n "${KITTENFS_TLS_CERT:-}" ] && scheme=https
host=${KITTENFS_HOST:-127.0.0.1}
case $host in
    0.0.0.0 | "") host=127.0.0.1 ;;
    :: | "[::]") host="[::1]" ;;
    \[*) ;;
    *:*) host="[$host]" ;;
esac
echo "$scheme://$host:$KITTENFS_PORT/health" >"${TMPDIR:-/tmp}/kittenfs-health-url"

# kittenfs reads every other setting from its KITTENFS_* variables (docs/configuration.md).
exec kittenfs "$role" "$@"
