# Shared by the local-stack scripts: find, install and start PostgreSQL, Redis and the Kafka broker.
# Every step is idempotent: a service already reachable is used as it is; one that is not is
# installed from Debian packages (or crates.io for the broker) and started with its data under
# .local/ in the project. Sourced, not run.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOCAL="$ROOT/.local"
export PATH="$HOME/.cargo/bin:$PATH"

DATABASE_HOST="${DATABASE_HOST:-127.0.0.1}"
DATABASE_PORT="${DATABASE_PORT:-5432}"
DATABASE_USER="${DATABASE_USER:-postgres}"
DATABASE_NAME="${DATABASE_NAME:-coupon_db}"
REDIS_HOST="${REDIS_HOST:-127.0.0.1}"
REDIS_PORT="${REDIS_PORT:-6379}"
KAFKA_BOOTSTRAP_SERVERS="${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}"
TANSU_VERSION="0.6.0"

log() { printf '\033[1;34m[stack]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[stack]\033[0m %s\n' "$*" >&2; exit 1; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

APT_UPDATED=""
apt_install() {
    command -v apt-get >/dev/null || die "apt-get not found: install $* yourself"
    if [ -z "$APT_UPDATED" ]; then
        log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        APT_UPDATED=1
    fi
    log "installing $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# tcp_open HOST PORT: something accepts connections there.
tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.2 s.
wait_for() {
    local seconds=$1 what=$2; shift 2
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        [ $SECONDS -lt $deadline ] || die "$what did not come up within ${seconds}s"
        sleep 0.2
    done
}

# Starts a command detached from this shell and its output (CI waits for open pipes otherwise).
detach() {
    local logfile=$1; shift
    setsid nohup "$@" >"$logfile" 2>&1 </dev/null &
}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

postgres_ready() {
    tcp_open "$DATABASE_HOST" "$DATABASE_PORT" &&
        psql -h "$DATABASE_HOST" -p "$DATABASE_PORT" -U "$DATABASE_USER" -d postgres -qtAc 'SELECT 1' >/dev/null 2>&1
}

ensure_postgres() {
    command -v psql >/dev/null || apt_install postgresql-client
    if postgres_ready; then log "PostgreSQL reachable at $DATABASE_HOST:$DATABASE_PORT"; return; fi
    case "$DATABASE_HOST" in 127.0.0.1|localhost) ;; *) die "PostgreSQL at $DATABASE_HOST:$DATABASE_PORT is not reachable" ;; esac
    [ -n "$(pg_bin)" ] || apt_install postgresql
    # The Debian package may have started its own cluster on the default port.
    if postgres_ready; then log "PostgreSQL started by its package"; return; fi
    local bin data="$LOCAL/postgres"
    bin="$(pg_bin)"
    mkdir -p "$data"
    # initdb and postgres refuse to run as root: the data directory belongs to the postgres user.
    local run=()
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
        chown postgres "$LOCAL" "$data"
        run=(runuser -u postgres --)
    fi
    if [ ! -f "$data/PG_VERSION" ]; then
        log "initialising a PostgreSQL cluster in $data"
        "${run[@]}" "$bin/initdb" -D "$data" -U "$DATABASE_USER" --auth=trust >"$LOCAL/initdb.log" 2>&1 ||
            die "initdb failed: see $LOCAL/initdb.log"
    fi
    log "starting PostgreSQL on port $DATABASE_PORT"
    "${run[@]}" "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
        -o "-p $DATABASE_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$data -c max_connections=300" \
        start >/dev/null || die "PostgreSQL did not start: see $data/server.log"
    wait_for 30 PostgreSQL postgres_ready
}

redis_ready() {
    tcp_open "$REDIS_HOST" "$REDIS_PORT" || return 1
    local reply
    { exec 4<>"/dev/tcp/$REDIS_HOST/$REDIS_PORT"; } 2>/dev/null || return 1
    printf 'PING\r\n' >&4
    read -r -t 2 reply <&4 || true
    exec 4>&-
    [[ "$reply" == "+PONG"* ]]
}

ensure_redis() {
    if redis_ready; then log "Redis reachable at $REDIS_HOST:$REDIS_PORT"; return; fi
    case "$REDIS_HOST" in 127.0.0.1|localhost) ;; *) die "Redis at $REDIS_HOST:$REDIS_PORT is not reachable" ;; esac
    command -v redis-server >/dev/null || apt_install redis-server
    if redis_ready; then log "Redis started by its package"; return; fi
    mkdir -p "$LOCAL/redis"
    log "starting Redis on port $REDIS_PORT"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$LOCAL/redis" \
        --save "" --appendonly no --logfile "$LOCAL/redis/redis.log" --pidfile "$LOCAL/redis/redis.pid"
    wait_for 30 Redis redis_ready
}

ensure_kafka() {
    local first="${KAFKA_BOOTSTRAP_SERVERS%%,*}"
    local host="${first%:*}" port="${first##*:}"
    if tcp_open "$host" "$port"; then log "Kafka broker reachable at $host:$port"; return; fi
    case "$host" in 127.0.0.1|localhost) ;; *) die "Kafka broker at $first is not reachable" ;; esac
    if ! command -v tansu >/dev/null; then
        log "installing the Tansu broker from crates.io (once per machine; 15-30 minutes)"
        cargo install tansu --version "$TANSU_VERSION" --locked --features libsql --quiet ||
            die "cargo install tansu failed"
    fi
    mkdir -p "$LOCAL/tansu"
    log "starting the Tansu broker on $host:$port (data in $LOCAL/tansu)"
    # The sqlite path is relative to the working directory.
    (cd "$LOCAL/tansu" && detach "$LOCAL/tansu/tansu.log" tansu broker \
        --listener-url "tcp://$host:$port" --advertised-listener-url "tcp://$host:$port" \
        --storage-engine "sqlite://tansu.db")
    wait_for 60 "Tansu broker" tcp_open "$host" "$port"
}

ensure_services() {
    mkdir -p "$LOCAL"
    ensure_postgres
    ensure_redis
    ensure_kafka
}

# Creates the service database when it does not exist.
ensure_database() {
    local name=$1
    if [ "$(psql -h "$DATABASE_HOST" -p "$DATABASE_PORT" -U "$DATABASE_USER" -d postgres -qtAc \
        "SELECT 1 FROM pg_database WHERE datname = '$name'")" != "1" ]; then
        log "creating database $name"
        psql -h "$DATABASE_HOST" -p "$DATABASE_PORT" -U "$DATABASE_USER" -d postgres -qc "CREATE DATABASE \"$name\"" >/dev/null
    fi
}

# http_status PORT PATH: the HTTP status code of GET 127.0.0.1:PORT/PATH (no curl on a fresh machine).
http_status() {
    local status_line
    # Braces: a bare `exec … 2>/dev/null` would silence this shell's stderr for good.
    { exec 6<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || { echo 000; return; }
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&6
    read -r -t 5 status_line <&6 || true
    exec 6>&-
    local code="${status_line#* }"
    echo "${code%% *}"
}
