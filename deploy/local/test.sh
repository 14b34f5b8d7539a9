#!/usr/bin/env bash
# The whole test suite against the real services (started here when they are not running).
# Each test creates its own database (cloned from a migrated template), Redis key prefix and Kafka
# topics; databases and Redis keys left by earlier runs are dropped first. Extra arguments go to the test runner.
source "$(dirname "$0")/lib.sh"

ensure_services
# The PostgreSQL TLS test starts a cluster of its own (initdb, pg_ctl) with certificates from openssl.
[ -n "$(pg_bin)" ] || apt_install postgresql
command -v openssl >/dev/null || apt_install openssl
# The Redis TLS, restart and cluster tests start redis-server processes of their own; the Kafka
# TLS tests put stunnel in front of brokers of their own.
command -v redis-server >/dev/null || apt_install redis-server
command -v stunnel4 >/dev/null || command -v stunnel >/dev/null || apt_install stunnel4
# The admin console's browser test: Node.js runs Playwright, which drives Debian's Chromium.
command -v node >/dev/null || apt_install nodejs npm
[ -x /usr/bin/chromium ] || apt_install chromium
[ -d "$ROOT/tests/console/node_modules/playwright-core" ] ||
    (cd "$ROOT/tests/console" && npm ci --no-audit --no-fund --loglevel=error)
log "dropping test databases of earlier runs"
psql -h "$DATABASE_HOST" -p "$DATABASE_PORT" -U "$DATABASE_USER" -d postgres -qtAc \
    "SELECT datname FROM pg_database WHERE datname LIKE 'coupon\_t\_%' OR datname LIKE 'coupon\_tmpl\_%'" |
    while read -r db; do
        [ -n "$db" ] && psql -h "$DATABASE_HOST" -p "$DATABASE_PORT" -U "$DATABASE_USER" -d postgres -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
    done

if command -v redis-cli >/dev/null; then
    log "dropping Redis keys of earlier runs"
    redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" --scan --pattern 'test:*' |
        xargs -r -n 1000 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" DEL >/dev/null
fi

cd "$ROOT"
export DATABASE_HOST DATABASE_PORT DATABASE_USER REDIS_HOST REDIS_PORT KAFKA_BOOTSTRAP_SERVERS
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast "$@"
else
    log "cargo-nextest not found; using cargo test"
    cargo test --workspace --no-fail-fast "$@"
fi
