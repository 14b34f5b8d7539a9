#!/usr/bin/env bash
# Fault injection on release binaries under load (`just faults [SCENARIO...]`).
#
# Scenarios (all when none is named): api-kill (kill -9 of api-server a third into a first-come
# burst, restart, sell out), worker-kill and scheduler-kill (kill -9 mid-stream and mid-job,
# restart), redis-flush (FLUSHALL mid-burst), redis-down (Redis stopped for 5 s mid-burst),
# postgres-restart (pg_ctl restart mid-burst), broker-down (a private broker stopped 30 s while
# the API issues), hostile-records (1,000 hostile Kafka
# records interleaved with 1,000 valid payments), hostile-http (hostile values in every request
# field, path segment and query parameter), schemathesis (`--checks all`, 100 examples per
# operation, deploy/local/schemathesis.toml). Each prints one row: scenario | load |
# acknowledged | committed | lost | oversold | leaked stock | stalled partitions | recovery, and the
# run ends with `N passed, N failed` (exit status 1 when one failed).
#
# Faults are injected into services of the run's own: a PostgreSQL cluster and a Redis started
# here on ports of their own (data under .local/faults-*), so restarting or flushing them touches
# nothing else; the Kafka broker is the local stack's, with topics of the run's own.
source "$(dirname "$0")/lib.sh"

FAULT_PG_PORT="${FAULT_PG_PORT:-55432}"
FAULT_REDIS_PORT="${FAULT_REDIS_PORT:-56379}"

ensure_services
command -v redis-cli >/dev/null || apt_install redis-tools
wants_schemathesis() { [ $# -eq 0 ] || [[ " $* " == *" schemathesis "* ]]; }
if wants_schemathesis "$@" && ! command -v schemathesis >/dev/null; then
    log "installing schemathesis from PyPI"
    python3 -m pip install --quiet 'schemathesis>=4,<5' || die "pip install schemathesis failed"
fi
cd "$ROOT"
log "building the three binaries and the fault driver (release)"
cargo build --quiet --release -p api-server -p event-worker -p scheduler
cargo build --quiet --release -p coupon-e2e --bin fault-suite

# A PostgreSQL cluster of the run's own.
bin="$(pg_bin)"
data="$LOCAL/faults-pg"
run=()
if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
    run=(runuser -u postgres --)
fi
rm -rf "$data"
mkdir -p "$data"
[ "$(id -u)" -eq 0 ] && chown postgres "$LOCAL" "$data"
"${run[@]}" "$bin/initdb" -D "$data" -U postgres --auth=trust >"$LOCAL/faults-initdb.log" 2>&1 ||
    die "initdb failed: see $LOCAL/faults-initdb.log"
pg_ctl_cmd="${run[*]} $bin/pg_ctl -D $data -l $data/server.log -w -t 60"
log "starting PostgreSQL for the faults on port $FAULT_PG_PORT"
$pg_ctl_cmd -o "-p $FAULT_PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$data -c max_connections=300" \
    start >/dev/null || die "PostgreSQL did not start: see $data/server.log"

log "starting Redis for the faults on port $FAULT_REDIS_PORT"
mkdir -p "$LOCAL/faults-redis"
redis-server --daemonize yes --bind 127.0.0.1 --port "$FAULT_REDIS_PORT" --dir "$LOCAL/faults-redis" \
    --save "" --appendonly no --logfile "$LOCAL/faults-redis/redis.log"

cleanup() {
    redis-cli -p "$FAULT_REDIS_PORT" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
    $pg_ctl_cmd stop -m immediate >/dev/null 2>&1 || true
}
trap cleanup EXIT

export DATABASE_HOST=127.0.0.1 DATABASE_PORT="$FAULT_PG_PORT" DATABASE_USER=postgres
export REDIS_HOST=127.0.0.1 REDIS_PORT="$FAULT_REDIS_PORT"
export KAFKA_BOOTSTRAP_SERVERS
export FAULT_BIN_DIR="${FAULT_BIN_DIR:-$ROOT/target/release}"
export FAULT_PG_RESTART="$pg_ctl_cmd restart -m fast"
log "running the scenarios"
target/release/fault-suite "$@"
