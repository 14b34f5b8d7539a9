#!/usr/bin/env bash
# Stops the services that the local scripts started under .local/ (not ones that were already
# running on the machine).
source "$(dirname "$0")/lib.sh"

if [ -f "$LOCAL/postgres/postmaster.pid" ]; then
    log "stopping PostgreSQL"
    run=(); [ "$(id -u)" -eq 0 ] && run=(runuser -u postgres --)
    "${run[@]}" "$(pg_bin)/pg_ctl" -D "$LOCAL/postgres" -m fast stop >/dev/null || true
fi
if [ -d "$LOCAL/redis" ] && redis_ready; then
    log "stopping Redis"
    exec 4<>"/dev/tcp/$REDIS_HOST/$REDIS_PORT" && printf 'SHUTDOWN NOSAVE\r\n' >&4 && exec 4>&- || true
fi
if pkill -f "tansu broker" 2>/dev/null; then log "stopped the Tansu broker"; fi
