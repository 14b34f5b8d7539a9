#!/usr/bin/env bash
# Stops the services that the local scripts started under .local/, and only those: a PostgreSQL,
# Redis or broker that was already running on the machine is left alone.
source "$(dirname "$0")/lib.sh"

if [ -f "$LOCAL/postgres/postmaster.pid" ]; then
    log "stopping PostgreSQL ($LOCAL/postgres)"
    run=()
    [ "$(id -u)" -eq 0 ] && run=(runuser -u postgres --)
    "${run[@]}" "$(pg_bin)/pg_ctl" -D "$LOCAL/postgres" -m fast stop >/dev/null || true
fi
if [ -f "$LOCAL/redis/redis.pid" ]; then
    log "stopping Redis ($LOCAL/redis)"
    kill "$(cat "$LOCAL/redis/redis.pid")" 2>/dev/null || true
    rm -f "$LOCAL/redis/redis.pid"
fi
first="${KAFKA_BOOTSTRAP_SERVERS%%,*}"
if pkill -f "tansu broker --listener-url tcp://$first " 2>/dev/null; then
    log "stopped the Tansu broker on $first"
fi
