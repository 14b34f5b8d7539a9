#!/usr/bin/env bash
# A Redis Cluster of 3 masters and 3 replicas from Debian's redis-server, on local ports.
#
#   deploy/local/redis-cluster.sh start [DIR PORT...]   start (or reuse) and wait until it serves
#   deploy/local/redis-cluster.sh stop  [DIR]           stop the nodes started in DIR
#
# Defaults: DIR .local/redis-cluster, ports 7001-7006 (the cluster bus on port + 10000). A PORT may
# be written PORT/BUSPORT to choose the bus port (the tests do). Each node keeps its nodes.conf in
# DIR/PORT and nothing else on disk. A replica takes over from a master unreachable for
# REDIS_CLUSTER_NODE_TIMEOUT ms (default 5000: shorter ones saw masters of a cluster sharing two
# cores with a benchmark replaced while alive). Prints REDIS_CLUSTER_NODES=... when it serves.
source "$(dirname "$0")/lib.sh"

action="${1:-start}"
dir="${2:-$LOCAL/redis-cluster}"
shift $(( $# < 2 ? $# : 2 ))
ports=("$@")
[ ${#ports[@]} -gt 0 ] || ports=(7001 7002 7003 7004 7005 7006)

port_of() { echo "${1%%/*}"; }

stop_nodes() {
    local pidfile
    for pidfile in "$dir"/*/redis.pid; do
        [ -f "$pidfile" ] || continue
        kill "$(cat "$pidfile")" 2>/dev/null || true
        rm -f "$pidfile"
    done
}

node_up() { [ "$(redis-cli -h 127.0.0.1 -p "$1" PING 2>/dev/null)" = "PONG" ]; }

# Every node sees the cluster whole: state ok, six nodes, and every master with a replica.
cluster_ok() {
    local spec port info
    for spec in "${ports[@]}"; do
        port="$(port_of "$spec")"
        info="$(redis-cli -h 127.0.0.1 -p "$port" CLUSTER INFO 2>/dev/null)" || return 1
        grep -q '^cluster_state:ok' <<<"$info" || return 1
        grep -q "^cluster_known_nodes:${#ports[@]}" <<<"$info" || return 1
    done
    [ "$(redis-cli -h 127.0.0.1 -p "$(port_of "${ports[0]}")" CLUSTER NODES | grep -c slave)" -eq $((${#ports[@]} / 2)) ]
}

case "$action" in
    stop)
        stop_nodes
        log "Redis Cluster in $dir stopped"
        exit 0
        ;;
    start) ;;
    *) die "usage: $0 start|stop [DIR PORT...]" ;;
esac

[ ${#ports[@]} -eq 6 ] || die "a cluster of 3 masters and 3 replicas needs 6 ports, got ${#ports[@]}"
command -v redis-server >/dev/null || apt_install redis-server
command -v redis-cli >/dev/null || apt_install redis-tools
mkdir -p "$dir"
addresses=()
for spec in "${ports[@]}"; do
    port="$(port_of "$spec")"
    bus=$((port + 10000))
    [[ "$spec" == */* ]] && bus="${spec##*/}"
    addresses+=("127.0.0.1:$port")
    node_up "$port" && continue
    mkdir -p "$dir/$port"
    : >"$dir/$port/redis.log"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --cluster-enabled yes \
        --cluster-port "$bus" --cluster-config-file "$dir/$port/nodes.conf" --cluster-node-timeout "${REDIS_CLUSTER_NODE_TIMEOUT:-5000}" \
        --cluster-replica-validity-factor 0 --dir "$dir/$port" --save "" --appendonly no \
        --pidfile "$dir/$port/redis.pid" --logfile "$dir/$port/redis.log" ||
        die "redis-server on port $port did not start: see $dir/$port/redis.log"
done
# A node that could not listen (its port or bus port taken) has exited: say why at once.
node_serving() {
    local log="$dir/$1/redis.log"
    node_up "$1" && return 0
    if grep -qs ', aborting' "$log"; then
        die "redis-server on port $1 stopped: $(grep -h '#' "$log" | tail -n 2)"
    fi
    return 1
}
for spec in "${ports[@]}"; do
    wait_for 30 "Redis on port $(port_of "$spec")" node_serving "$(port_of "$spec")"
done
if ! cluster_ok; then
    if [ "$(redis-cli -h 127.0.0.1 -p "$(port_of "${ports[0]}")" CLUSTER INFO | grep -c '^cluster_known_nodes:1')" -eq 1 ]; then
        log "forming a Redis Cluster of ${addresses[*]}"
        redis-cli --cluster create "${addresses[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 ||
            die "redis-cli --cluster create failed: see $dir/create.log"
    fi
    wait_for 60 "the Redis Cluster in $dir" cluster_ok
fi
log "Redis Cluster serving on ${addresses[*]}"
echo "REDIS_CLUSTER_NODES=$(IFS=,; echo "${addresses[*]}")"
