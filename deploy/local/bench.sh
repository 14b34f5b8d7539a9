#!/usr/bin/env bash
# Benchmarks on the local machine, printing numbers (never asserting timings in tests).
#
#   deploy/local/bench.sh issue [SECONDS] [CONNECTIONS]
#   deploy/local/bench.sh reserve [SECONDS] [CONNECTIONS]
#   deploy/local/bench.sh events [N]
#   deploy/local/bench.sh quote [SECONDS] [CONNECTIONS]
#   deploy/local/bench.sh codes [N]
#
# issue: a release api-server on a fresh database, a FIRST_COME policy whose cap is far above what
# the run can issue, and wrk driving POST /api/coupons/download with a distinct user per request
# for SECONDS (default 20) over CONNECTIONS (default 64). Then the same wrk against /health/live of
# the same server (the HTTP ceiling), a 5 s sold-out burst against a policy of 100 coupons, and a
# check of PostgreSQL: coupons issued = 201 answers (plus at most the requests still in flight when
# wrk stopped), every coupon with its outbox row, exactly 100 coupons for the burst's policy.
#
# With BENCH_REDIS=cluster, the api-server uses the local Redis Cluster of 3 masters and 3 replicas
# (deploy/local/redis-cluster.sh, started when needed) instead of the single Redis.
#
# With BENCH_IDEMPOTENCY_KEYS=1, issue and reserve send a distinct Idempotency-Key with every
# request (what keys cost: a claim, and the answer written in the effect's transaction).
#
# reserve: 300,000 coupons of distinct users issued up front (SQL), plus 100,000 earlier checkouts as history, then wrk driving reserve → use
# cycles, one coupon per cycle, the two requests pipelined on one connection. Prints cycles/s and
# the latency of the cycle, then checks PostgreSQL: every used coupon has its confirmed reservation
# and its coupon.reserved and coupon.used outbox rows.
#
# quote: 2,000 users with a wallet of 200 AVAILABLE coupons each (SQL: 8 policies, stackable and
# not, one with a budget, 25 coupons of each), then wrk driving POST /api/coupons/quote for random
# users over CONNECTIONS (default 64) for SECONDS. Prints quotes/s and the latency, checks that
# every answer listed the 200 coupons and that nothing was written (no reservation, no outbox row).
#
# codes: a CODE policy with codeMode UNIQUE, then POST …/codes {count: N} (default 1,000,000)
# timed until its job is DONE (codes/s), a check in PostgreSQL that the policy has N distinct
# codes, and the CSV export of all N streamed through curl, with the api-server's peak RSS
# (VmHWM) before and after the export.
#
# events: N (default 50,000) coupons RESERVED by their pending reservations (SQL), fresh topics,
# N payment.completed produced beforehand (500 per produce call), drained once by a consumer that
# applies nothing (drain-payments: the broker's ceiling, same fetch size), then a release
# event-worker timed from its start until all N coupons are USED; the ratio of the two rates, the
# CPU per event of the worker, PostgreSQL and Tansu, and Tansu's CPU per record of the drain.
# Checks that every reservation was confirmed once: used coupons = coupon.used rows =
# processed_events rows = stored offsets = N.
source "$(dirname "$0")/lib.sh"

what="${1:-}"
seconds="${2:-20}"
connections="${3:-64}"
keys=$([ "${BENCH_IDEMPOTENCY_KEYS:-0}" = 1 ] && echo keys || echo none)
case "$what" in issue | reserve | quote | codes | events) ;; *) die "usage: $0 issue|reserve|quote [SECONDS] [CONNECTIONS] | codes [N] | events [N]" ;; esac

command -v wrk >/dev/null || apt_install wrk
command -v curl >/dev/null || apt_install curl
ensure_postgres
ensure_redis
redis_mode="${BENCH_REDIS:-node}"
case "$redis_mode" in
    node) unset REDIS_CLUSTER_NODES ;;
    cluster) export REDIS_CLUSTER_NODES="$("$ROOT/deploy/local/redis-cluster.sh" start | sed -n 's/^REDIS_CLUSTER_NODES=//p')" ;;
    *) die "BENCH_REDIS is node or cluster, not $redis_mode" ;;
esac

# CPU time (clock ticks, user + system) of the processes given.
cpu_ticks() {
    local sum=0 p
    for p in "$@"; do sum=$(( sum + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0) )); done
    echo $sum
}
# Microseconds of CPU per operation from clock ticks. $1: ticks, $2: operations.
per_op() { awk -v t="$1" -v n="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.0f", t * 1e6 / hz / n }'; }

bench_db=coupon_bench
port=8090
token=bench-admin-token-0123456789
if [ "$what" = events ]; then
    n="${2:-50000}"
    ensure_postgres
    ensure_kafka
    cd "$ROOT"
    log "building event-worker and the bench producer (release)"
    cargo build --quiet --release -p api-server -p event-worker
    cargo build --quiet --release -p coupon-e2e --bin produce-payments --bin drain-payments
    bench_db=coupon_bench
    psql -h "$DATABASE_HOST" -p "$DATABASE_PORT" -U "$DATABASE_USER" -d postgres -qc "DROP DATABASE IF EXISTS $bench_db WITH (FORCE)" -c "CREATE DATABASE $bench_db"
    export DATABASE_NAME=$bench_db LOG_LEVEL=warn WORKER_ADMIN_PORT=9191
    target/release/api-server migrate >/dev/null 2>&1 || die "migrations failed"
    suffix="bench$$"
    for t in COUPON_ISSUED:coupon.issued COUPON_RESERVED:coupon.reserved COUPON_USED:coupon.used \
        COUPON_CANCELLED:coupon.cancelled COUPON_EXPIRED:coupon.expired PAYMENT_COMPLETED:payment.completed.v1 \
        PAYMENT_FAILED:payment.failed.v1 ORDER_CANCELLED:order.cancelled COUPON_ISSUE_REQUESTED:coupon.issue-requested; do
        export "KAFKA_TOPIC_${t%%:*}=${t#*:}.$suffix"
    done
    q() { psql -h "$DATABASE_HOST" -p "$DATABASE_PORT" -U "$DATABASE_USER" -d $bench_db -tAc "$1"; }
    log "reserving $n coupons"
    q "INSERT INTO coupon_policies (id, coupon_name, discount_type, discount_value, distribution_type, valid_days, valid_from, valid_until)
       VALUES (1, 'bench', 'FIXED_AMOUNT', 1000, 'DOWNLOAD', 30, now() - interval '1 day', now() + interval '1 day')" >/dev/null
    q "WITH c AS (INSERT INTO coupon_issues (policy_id, user_id, status, reservation_id, reserved_at, issued_at, expires_at)
                  SELECT 1, u, 'RESERVED', 'S' || u, now(), now() - interval '1 hour', now() + interval '30 days'
                  FROM generate_series(1, $n) u RETURNING id, user_id, reservation_id)
       INSERT INTO coupon_reservations (reservation_id, coupon_id, user_id, order_id, order_amount, discount_amount,
                                        status, reserved_at, expires_at, created_at, updated_at)
       SELECT reservation_id, id, user_id, 'O-' || reservation_id, 50000, 1000, 'PENDING', now(), now() + interval '1 hour', now(), now() FROM c" >/dev/null
    q "VACUUM ANALYZE" >/dev/null
    first=$(q "SELECT min(id) FROM coupon_issues")
    [ "$(q "SELECT count(*) FROM coupon_issues WHERE id - $first + 1 = user_id")" = "$n" ] || die "coupon ids are not contiguous"
    # A first worker creates the topics and stops; the events are produced as a backlog; a second
    # worker is timed from its start until every coupon is USED.
    worker_ready() { [ "$(http_status 9191 /health/ready)" = 200 ]; }
    target/release/event-worker >"$LOCAL/bench-event-worker.log" 2>&1 &
    worker=$!
    trap 'kill $worker 2>/dev/null; wait $worker 2>/dev/null' EXIT
    wait_for 60 event-worker worker_ready
    kill $worker && wait $worker 2>/dev/null || true
    [ "$(q "SELECT count(*) FROM coupon_issues WHERE status = 'USED'")" = 0 ] || die "coupons were used before the run"
    log "producing $n payment.completed"
    target/release/produce-payments "$first" "$n"
    log "draining them with a consumer that applies nothing (what the broker can deliver)"
    broker_ticks=$(cpu_ticks $(pgrep -x tansu))
    drained=$(target/release/drain-payments)
    broker_ticks=$(( $(cpu_ticks $(pgrep -x tansu)) - broker_ticks ))
    echo "$drained"
    drained_n=$(awk '{print $2}' <<<"$drained")
    drained_s=$(awk '{print $(NF - 1)}' <<<"$drained")
    [ "$drained_n" = "$n" ] || die "the drain read $drained_n records, not $n"
    log "starting the event-worker and waiting until every coupon is USED"
    start=$(date +%s.%N)
    target/release/event-worker >>"$LOCAL/bench-event-worker.log" 2>&1 &
    worker=$!
    before="$(cpu_ticks $(pgrep -x postgres)) $(cpu_ticks $(pgrep -x tansu))"
    # The stored offsets commit with the effects, so their sum reaching N means every effect is in;
    # polling three rows keeps the poll's own load off PostgreSQL, and one psql polling every 0.1 s
    # (\watch) keeps it off the machine (a psql started per poll took 7 % of its CPU). The first
    # commit is noted to show how much of the time is the worker's start (connect, leases).
    first_commit=
    exec {poll}< <(exec psql -h "$DATABASE_HOST" -p "$DATABASE_PORT" -U "$DATABASE_USER" -d $bench_db -tAq \
        <<<'SELECT COALESCE(sum(next_offset), 0) FROM consumer_offsets \watch 0.1')
    poller=$!
    done_so_far=0
    while [ "$done_so_far" -lt "$n" ] && read -r -u "$poll" line; do
        [ -n "$line" ] || continue
        done_so_far=$line
        [ -z "$first_commit" ] && [ "$done_so_far" -gt 0 ] && first_commit=$EPOCHREALTIME
        (( ${EPOCHREALTIME%.*} - ${start%.*} > 600 )) && die "not done after 600 s"
    done
    end=$EPOCHREALTIME
    worker_ticks=$(cpu_ticks $worker)
    read -r pg_ticks tansu_ticks <<<"$before"
    pg_ticks=$(( $(cpu_ticks $(pgrep -x postgres)) - pg_ticks ))
    tansu_ticks=$(( $(cpu_ticks $(pgrep -x tansu)) - tansu_ticks ))
    kill $poller 2>/dev/null
    exec {poll}<&-
    [ "$done_so_far" -ge "$n" ] || die "the progress poll stopped at $done_so_far of $n"
    first_commit=${first_commit:-$end}
    used=$(q "SELECT count(*) FROM coupon_issues WHERE status = 'USED'")
    events=$(q "SELECT count(*) FROM outbox WHERE event_type = 'COUPON_USED'")
    processed=$(q "SELECT count(*) FROM processed_events")
    offsets=$(q "SELECT COALESCE(sum(next_offset), 0) FROM consumer_offsets")
    echo
    echo "== bench events ($(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB; event-worker, PostgreSQL and Tansu on this machine)"
    awk -v n="$n" -v s="$start" -v e="$end" 'BEGIN { printf "payment.completed → USED: %d events in %.2f s = %.0f events/s (timed from the worker start: connect, leases, fetch, apply)\n", n, e - s, n / (e - s) }'
    awk -v s="$start" -v f="$first_commit" 'BEGIN { printf "first batch committed %.2f s after the worker started\n", f - s }'
    awk -v n="$n" -v s="$start" -v e="$end" -v d="$drained_s" 'BEGIN { printf "broker ceiling: a consumer applying nothing drained the %d records in %.2f s = %.0f records/s; ratio: %.3f\n", n, d, n / d, (n / (e - s)) / (n / d) }'
    echo "CPU per event: event-worker $(per_op "$worker_ticks" "$n") µs, PostgreSQL $(per_op "$pg_ticks" "$n") µs, Tansu $(per_op "$tansu_ticks" "$n") µs (the worker's fetches and its relay's produces); $(per_op $(( worker_ticks + pg_ticks + tansu_ticks )) "$n") µs in all"
    echo "Tansu's CPU per record serving the drain: $(per_op "$broker_ticks" "$n") µs"
    echo "used coupons: $used   coupon.used rows: $events   processed_events: $processed   stored offsets: $offsets"
    ok=1
    for v in "$used" "$events" "$processed" "$offsets"; do [ "$v" = "$n" ] || ok=0; done
    [ $ok = 1 ] && echo "CHECK OK: every reservation confirmed exactly once, offsets at the end of the stream"
    [ $ok = 1 ]
    exit
fi

cd "$ROOT"
log "building api-server (release)"
cargo build --quiet --release -p api-server
psql -h "$DATABASE_HOST" -p "$DATABASE_PORT" -U "$DATABASE_USER" -d postgres -qc "DROP DATABASE IF EXISTS $bench_db WITH (FORCE)" -c "CREATE DATABASE $bench_db"
DATABASE_NAME=$bench_db target/release/api-server migrate >/dev/null 2>&1 || die "migrations failed"

export DATABASE_NAME=$bench_db HTTP_PORT=$port COUPON_ADMIN_TOKENS=$token REDIS_KEY_PREFIX="bench:$$:" LOG_LEVEL=warn
target/release/api-server >"$LOCAL/bench-api-server.log" 2>&1 &
server=$!
# Stop the server and drop this run's Redis keys (gate holders, rate counters) from the shared Redis.
cleanup() {
    kill $server 2>/dev/null
    wait $server 2>/dev/null
    command -v redis-cli >/dev/null || return 0
    if [ -n "${REDIS_CLUSTER_NODES:-}" ]; then
        # Each master holds its own slots' keys: one UNLINK per key (keys of different slots cannot
        # share a command), streamed to that master over one connection.
        for node in ${REDIS_CLUSTER_NODES//,/ }; do
            local cli=(redis-cli -h "${node%:*}" -p "${node##*:}")
            [ "$("${cli[@]}" ROLE | head -n 1)" = master ] || continue
            "${cli[@]}" --scan --pattern "${REDIS_KEY_PREFIX}*" | sed 's/^/UNLINK /' | "${cli[@]}" >/dev/null
        done
    else
        redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" --scan --pattern "${REDIS_KEY_PREFIX}*" |
            xargs -r -n 1000 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" DEL >/dev/null
    fi
}
trap cleanup EXIT
api_ready() { [ "$(http_status $port /health/ready)" = 200 ]; }
wait_for 30 api-server api_ready

q() { psql -h "$DATABASE_HOST" -p "$DATABASE_PORT" -U "$DATABASE_USER" -d $bench_db -tAc "$1"; }
until=$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)
# Creates a policy through the admin API and prints its id. $1: the JSON fields that differ
# (discount, distribution, cap); the window is open from 2020 until tomorrow, 30 valid days.
new_policy() {
    local id
    id=$(curl -fsS -X POST "http://127.0.0.1:$port/api/coupon-policies" -H "Authorization: Bearer $token" \
        -H 'Content-Type: application/json' \
        -d "{\"couponName\":\"bench\",$1,\"validDays\":30,\"validFrom\":\"2020-01-01T00:00:00Z\",\"validUntil\":\"$until\"}" |
        sed -E 's/.*"id":([0-9]+).*/\1/')
    [ -n "$id" ] || die "cannot create a bench policy"
    echo "$id"
}

# CPU time (clock ticks, user + system) of the api-server and of every PostgreSQL and Redis process,
# and of this shell's finished children (wrk), around a run: the CPU cost of one operation per process.
# `times` runs in this shell (a subshell would see none of its children); its second line holds
# the children's user and system time as 0m1.234s.
cpu_snapshot() {
    times >"$LOCAL/bench-times.txt"
    local children
    children=$(awk -v hz="$(getconf CLK_TCK)" 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%d", (u[1] * 60 + u[2] + s[1] * 60 + s[2]) * hz }' "$LOCAL/bench-times.txt")
    echo "$(cpu_ticks $server) $(cpu_ticks $(pgrep -x postgres)) $(cpu_ticks $(pgrep -x redis-server)) $children"
}
# Prints the CPU per operation of each process between the two snapshots. $1: what an operation
# is (issue, cycle), $2: how many there were.
cpu_report() {
    awk -v b="$(cat "$LOCAL/bench-cpu-before.txt")" -v a="$(cat "$LOCAL/bench-cpu-after.txt")" -v what="$1" -v n="$2" \
        -v hz="$(getconf CLK_TCK)" -v cores="$(nproc)" 'BEGIN {
        split(b, x); split(a, y); total = 0
        for (i = 1; i <= 4; i++) { us[i] = (y[i] - x[i]) * 1e6 / hz / n; total += us[i] }
        printf "CPU per %s: api-server %.0f µs, PostgreSQL %.0f µs, Redis %.0f µs, wrk %.0f µs; %.0f µs in all (%d cores allow %.0f %ss/s at that cost)\n",
            what, us[1], us[2], us[3], us[4], total, cores, cores * 1e6 / total, what }'
}

if [ "$what" = codes ]; then
    n="${2:-1000000}"
    policy=$(new_policy '"discountType":"FIXED_AMOUNT","discountValue":1000,"distributionType":"CODE","codeMode":"UNIQUE"')
    peak() { awk '/VmHWM/ {print $2 / 1024 " MiB"}' "/proc/$server/status"; }
    log "generating $n unique codes"
    start=$(date +%s.%N)
    job=$(curl -fsS -X POST "http://127.0.0.1:$port/api/coupon-policies/$policy/codes" -H "Authorization: Bearer $token" \
        -H 'Content-Type: application/json' -d "{\"count\":$n}" | sed -E 's/.*"jobId":([0-9]+).*/\1/')
    [ -n "$job" ] || die "the job did not start"
    while state=$(curl -fsS "http://127.0.0.1:$port/api/coupon-policies/$policy/codes/jobs/$job" -H "Authorization: Bearer $token") &&
        grep -q '"state":"RUNNING"' <<<"$state"; do
        sleep 0.2
        awk -v s="$start" -v now="$(date +%s.%N)" 'BEGIN { exit !(now - s > 600) }' && die "not done after 600 s"
    done
    end=$(date +%s.%N)
    rows=$(q "SELECT count(*) || ' ' || count(DISTINCT code) FROM coupon_codes WHERE policy_id = $policy")
    before=$(peak)
    log "exporting them as CSV"
    export_start=$(date +%s.%N)
    lines=$(curl -fsS "http://127.0.0.1:$port/api/coupon-policies/$policy/codes?format=csv" -H "Authorization: Bearer $token" | wc -l)
    export_end=$(date +%s.%N)
    echo
    echo "== bench codes ($(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB; api-server and PostgreSQL on this machine)"
    echo "job: $state"
    awk -v n="$n" -v s="$start" -v e="$end" 'BEGIN { printf "generated %d codes in %.2f s = %.0f codes/s (from the POST to the job DONE)\n", n, e - s, n / (e - s) }'
    echo "in PostgreSQL: rows and distinct codes of the policy: $rows"
    awk -v l="$lines" -v s="$export_start" -v e="$export_end" 'BEGIN { printf "export: %d lines (header included) in %.2f s\n", l, e - s }'
    echo "api-server peak RSS (VmHWM): $before before the export, $(peak) after"
    ok=1
    [ "$rows" = "$n $n" ] || { echo "FAIL: expected $n distinct codes"; ok=0; }
    grep -q '"state":"DONE"' <<<"$state" || { echo "FAIL: the job did not finish DONE"; ok=0; }
    [ "$lines" = "$((n + 1))" ] || { echo "FAIL: the export has $lines lines"; ok=0; }
    [ $ok = 1 ] && echo "CHECK OK: $n distinct codes in PostgreSQL, all exported"
    [ $ok = 1 ]
    exit
fi

if [ "$what" = quote ]; then
    users=2000
    wallet=200
    log "8 policies, $wallet coupons for each of $users users"
    for spec in '5000,false' '3000,false' '8000,false' '1000,true' '2000,true' '1500,true' '2500,true'; do
        new_policy "\"discountType\":\"FIXED_AMOUNT\",\"discountValue\":${spec%,*},\"stackable\":${spec#*,},\"maxIssuePerUser\":1000,\"distributionType\":\"DOWNLOAD\"" >/dev/null
    done
    new_policy '"discountType":"PERCENTAGE","discountValue":10,"stackable":true,"budgetAmount":1000000,"maxIssuePerUser":1000,"distributionType":"DOWNLOAD"' >/dev/null
    q "INSERT INTO coupon_issues (policy_id, user_id, user_slot, status, issued_at, expires_at)
       SELECT p.id, u, s, 'ISSUED', now(), now() + interval '30 days'
       FROM coupon_policies p, generate_series(1, $users) u, generate_series(1, $wallet / 8) s" >/dev/null
    q "VACUUM ANALYZE" >/dev/null
    log "quotes for ${seconds}s over $connections connections"
    result=$(wrk -t2 -c"$connections" -d"${seconds}s" --latency -s deploy/local/bench/quote.lua \
        "http://127.0.0.1:$port" -- "$users" "$wallet" | tee "$LOCAL/bench-quote.txt" | grep -E '^(RESULT|status)')
    written=$(q "SELECT (SELECT count(*) FROM coupon_reservations) + (SELECT count(*) FROM outbox)")
    echo
    echo "== bench quote ($(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB; api-server, PostgreSQL and wrk on this machine)"
    echo "$result"
    echo "wallets of $wallet AVAILABLE coupons (8 policies), $users users; rows written by the quotes: $written"
    ok=1
    [ "$written" = 0 ] || { echo "FAIL: a quote wrote something"; ok=0; }
    grep -q 'wrong_wallet=0 ' <<<"$result" || { echo "FAIL: an answer did not list the whole wallet"; ok=0; }
    [ "$(grep -c '^status' <<<"$result")" = 1 ] || { echo "FAIL: answers other than 200"; ok=0; }
    [ $ok = 1 ] && echo "CHECK OK: every quote judged the whole wallet and wrote nothing"
    [ $ok = 1 ]
    exit
fi

if [ "$what" = reserve ]; then
    coupons=300000
    policy=$(new_policy '"discountType":"PERCENTAGE","discountValue":10,"maxDiscountAmount":3000,"distributionType":"DOWNLOAD"')
    log "issuing $coupons coupons to $coupons users"
    q "INSERT INTO coupon_issues (policy_id, user_id, status, issued_at, expires_at)
       SELECT $policy, u, 'ISSUED', now(), now() + interval '30 days' FROM generate_series(1, $coupons) u" >/dev/null
    # History, as a running service has it: 100,000 earlier checkouts (used coupons of other users
    # with their confirmed reservations). Statistics then describe real tables, not empty ones.
    q "WITH used AS (INSERT INTO coupon_issues (policy_id, user_id, status, reservation_id, order_id, discount_amount,
                                               issued_at, expires_at, reserved_at, used_at)
                     SELECT $policy, 1000000 + u, 'USED', 'old-' || u, 'old-order-' || u, 1000,
                            now() - interval '2 days', now() + interval '28 days', now() - interval '1 day', now() - interval '1 day'
                     FROM generate_series(1, 100000) u RETURNING id, user_id, reservation_id, order_id, reserved_at)
       INSERT INTO coupon_reservations (reservation_id, coupon_id, user_id, order_id, order_amount, discount_amount,
                                        status, reserved_at, expires_at, confirmed_at, created_at, updated_at)
       SELECT reservation_id, id, user_id, order_id, 50000, 1000, 'CONFIRMED', reserved_at, reserved_at + interval '10 minutes',
              reserved_at, reserved_at, reserved_at FROM used" >/dev/null
    q "VACUUM ANALYZE" >/dev/null
    first=$(q "SELECT min(id) FROM coupon_issues WHERE status = 'ISSUED'")
    [ "$(q "SELECT count(*) FROM coupon_issues WHERE id - $first + 1 = user_id AND user_id <= $coupons")" = "$coupons" ] ||
        die "coupon ids are not contiguous"
    log "reserve → use for ${seconds}s over $connections connections"
    cpu_snapshot >"$LOCAL/bench-cpu-before.txt"
    result=$(wrk -t2 -c"$connections" -d"${seconds}s" --latency -s deploy/local/bench/reserve.lua \
        "http://127.0.0.1:$port" -- "$first" "$coupons" 1 "run$$" 2 "$keys" | tee "$LOCAL/bench-reserve.txt" |
        grep -E '^(RESULT|status)')
    cpu_snapshot >"$LOCAL/bench-cpu-after.txt"
    sleep 1
    used=$(q "SELECT count(*) FROM coupon_issues WHERE status = 'USED' AND reservation_id NOT LIKE 'old-%'")
    confirmed=$(q "SELECT count(*) FROM coupon_reservations WHERE status = 'CONFIRMED' AND reservation_id NOT LIKE 'old-%'")
    held=$(q "SELECT count(*) FROM coupon_reservations WHERE reservation_id NOT LIKE 'old-%'")
    events_used=$(q "SELECT count(*) FROM outbox WHERE event_type = 'COUPON_USED'")
    events_reserved=$(q "SELECT count(*) FROM outbox WHERE event_type = 'COUPON_RESERVED'")
    echo
    echo "== bench reserve ($(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB; api-server, PostgreSQL and wrk on this machine)"
    [ "$keys" = keys ] && echo "every request carried a distinct Idempotency-Key"
    echo "$result"
    echo "reserve+use cycles/s: $(( used / seconds ))   (coupons used: $used in ${seconds}s)"
    echo "p50/p95/p99 above are per cycle: wrk times a pipelined reserve+use pair from its first byte to the last answer."
    cpu_report cycle "$used"
    echo "reservations: $held   confirmed: $confirmed   coupon.reserved rows: $events_reserved   coupon.used rows: $events_used"
    ok=1
    [ "$used" = "$confirmed" ] || { echo "FAIL: used coupons ≠ confirmed reservations"; ok=0; }
    [ "$used" = "$events_used" ] || { echo "FAIL: a use without its coupon.used row"; ok=0; }
    [ "$held" = "$events_reserved" ] || { echo "FAIL: a reservation without its coupon.reserved row"; ok=0; }
    [ "$(grep -c '^status' <<<"$result")" = 1 ] || { echo "FAIL: answers other than 200"; ok=0; }
    [ $ok = 1 ] && echo "CHECK OK: every cycle committed its reservation, its use and both events"
    [ $ok = 1 ]
    exit
fi

first_come='"discountType":"FIXED_AMOUNT","discountValue":1000,"distributionType":"FIRST_COME"'
policy=$(new_policy "$first_come,\"maxIssueCount\":1000000000")

log "issuing for ${seconds}s over $connections connections (policy $policy)"
cpu_snapshot >"$LOCAL/bench-cpu-before.txt"
result=$(wrk -t2 -c"$connections" -d"${seconds}s" --latency -s deploy/local/bench/issue.lua \
    "http://127.0.0.1:$port" -- "$policy" "$(( $(date +%s) % 100000 * 1000000000 ))" "$keys" | tee "$LOCAL/bench-issue.txt" | grep -E '^(RESULT|status)')
cpu_snapshot >"$LOCAL/bench-cpu-after.txt"
sleep 2
log "HTTP ceiling: GET /health/live, same server, same load"
ceiling=$(wrk -t2 -c"$connections" -d10s "http://127.0.0.1:$port/health/live" | awk '/Requests\/sec/ {print $2}')

# Sold-out burst: a policy of 100 coupons, then 5 s of requests from distinct users; the first 100
# get coupons, every other one must be answered COUPON_SOLD_OUT (by the Redis gate, then from the
# server's sold-out memo, without PostgreSQL). wrk runs for a duration, so the burst is sized in
# seconds, not requests.
burst_seconds=5
cap=100
sold_out=$(new_policy "$first_come,\"maxIssueCount\":$cap")
log "sold-out burst: ${burst_seconds}s of requests for $cap coupons over $connections connections (policy $sold_out)"
burst_result=$(wrk -t2 -c"$connections" -d"${burst_seconds}s" --latency -s deploy/local/bench/issue.lua \
    "http://127.0.0.1:$port" -- "$sold_out" "$(( ($(date +%s) + 1) % 100000 * 1000000000 ))" |
    tee "$LOCAL/bench-issue-burst.txt" | grep -E '^(RESULT|status)')
burst_rows=$(q "SELECT count(*) FROM coupon_issues WHERE policy_id = $sold_out")
burst_created=$(sed -E 's/.*created=([0-9]+).*/\1/' <<<"$(grep RESULT <<<"$burst_result")")
burst_other=$(sed -E 's/.*other=([0-9]+).*/\1/' <<<"$(grep RESULT <<<"$burst_result")")
burst_gone=$(sed -nE 's/^status 410: ([0-9]+)$/\1/p' <<<"$burst_result")

rows=$(q "SELECT count(*) FROM coupon_issues WHERE policy_id = $policy")
outbox=$(q "SELECT count(*) FROM outbox WHERE event_type = 'COUPON_ISSUED'")
outbox=$(( outbox - burst_rows ))
counter=$(q "SELECT current_issue_count FROM coupon_policies WHERE id = $policy")
created=$(sed -E 's/.*created=([0-9]+).*/\1/' <<<"$(grep RESULT <<<"$result")")
rate=$(sed -E 's/.* rate=([0-9]+).*/\1/' <<<"$(grep RESULT <<<"$result")")

echo
echo "== bench issue ($(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB; api-server, PostgreSQL, Redis ($redis_mode) and wrk on this machine)"
[ "$keys" = keys ] && echo "every request carried a distinct Idempotency-Key"
echo "$result"
echo "issues/s:            $(( created / seconds ))   (requests/s incl. non-201: $rate)"
echo "HTTP ceiling (/health/live): ${ceiling} req/s   ratio: $(awk -v a="$created" -v s="$seconds" -v c="$ceiling" 'BEGIN {printf "%.3f", a / s / c}')"
echo "rows: $rows   counter: $counter   outbox rows: $outbox   201 answers: $created"
cpu_report issue "$created"
ok=1
[ "$rows" = "$counter" ] || { echo "FAIL: rows ≠ counter"; ok=0; }
[ "$rows" = "$outbox" ] || { echo "FAIL: a coupon without its outbox row"; ok=0; }
[ "$rows" -ge "$created" ] || { echo "FAIL: fewer rows than 201 answers"; ok=0; }
[ "$rows" -le $(( created + connections )) ] || { echo "FAIL: more rows than 201 answers + requests in flight"; ok=0; }
echo
echo "sold-out burst: $burst_result" | sed 's/^/  /'
echo "  $cap coupons, $(( burst_created + burst_other )) answers in ${burst_seconds}s ($(( (burst_created + burst_other) / burst_seconds )) req/s): $burst_created × 201, ${burst_gone:-0} × 410 COUPON_SOLD_OUT; coupons in PostgreSQL: $burst_rows"
[ "$burst_rows" = "$cap" ] || { echo "FAIL: the burst policy holds $burst_rows coupons, not $cap"; ok=0; }
[ "$burst_created" = "$cap" ] || { echo "FAIL: $burst_created answers 201 in the burst, not $cap"; ok=0; }
[ "$(( burst_created + ${burst_gone:-0} ))" = "$(( burst_created + burst_other ))" ] || { echo "FAIL: burst answers other than 201 and 410"; ok=0; }
[ $ok = 1 ] && echo "CHECK OK: every 201 is a committed coupon with its event; extra rows ($(( rows - created ))) are requests in flight when wrk stopped; the burst issued exactly its cap"
[ $ok = 1 ]
