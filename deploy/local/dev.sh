#!/usr/bin/env bash
# The whole stack for a person to try: services, schema, and the three binaries in the foreground.
# Ctrl-C stops the binaries gracefully (the services keep running; deploy/local/stop.sh stops them).
source "$(dirname "$0")/lib.sh"

ensure_services
ensure_database "$DATABASE_NAME"
cd "$ROOT"
log "building the binaries"
cargo build --quiet -p api-server -p event-worker -p scheduler
target/debug/api-server migrate

export LOG_FORMAT="${LOG_FORMAT:-pretty}"
export COUPON_ADMIN_TOKENS="${COUPON_ADMIN_TOKENS:-dev-admin-token-change-me}"
HTTP_PORT="${HTTP_PORT:-8080}" WORKER_ADMIN_PORT="${WORKER_ADMIN_PORT:-9101}" SCHEDULER_ADMIN_PORT="${SCHEDULER_ADMIN_PORT:-9102}"
export HTTP_PORT WORKER_ADMIN_PORT SCHEDULER_ADMIN_PORT

pids=()
stop() {
    trap - INT TERM EXIT
    log "stopping the binaries"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

target/debug/api-server & pids+=($!)
target/debug/event-worker & pids+=($!)
target/debug/scheduler & pids+=($!)

ready() {
    for port in "$HTTP_PORT" "$WORKER_ADMIN_PORT" "$SCHEDULER_ADMIN_PORT"; do
        [ "$(http_status "$port" /health/ready)" = 200 ] || return 1
    done
}
wait_for 120 "the binaries (GET /health/ready = 200)" ready

cat >&2 <<BANNER

  Coupon service is up.
    API          http://127.0.0.1:$HTTP_PORT        (admin token: $COUPON_ADMIN_TOKENS)
    console      http://127.0.0.1:$HTTP_PORT/admin  (sign in with the admin token)
    health       http://127.0.0.1:$HTTP_PORT/health/ready
    metrics      http://127.0.0.1:$HTTP_PORT/metrics   worker :$WORKER_ADMIN_PORT/metrics   scheduler :$SCHEDULER_ADMIN_PORT/metrics
    PostgreSQL   $DATABASE_HOST:$DATABASE_PORT/$DATABASE_NAME   Redis $REDIS_HOST:$REDIS_PORT   Kafka $KAFKA_BOOTSTRAP_SERVERS
  Ctrl-C stops the binaries.

BANNER
# Stop everything as soon as one binary exits.
wait -n "${pids[@]}" || true
