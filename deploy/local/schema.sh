#!/usr/bin/env bash
# Checks that crates/coupon-store-pg/src/schema.rs is what `diesel print-schema` makes of the
# migrations: applies them (api-server migrate) to a scratch database and compares. `schema.sh --write` regenerates the
# file instead. Installs diesel_cli (PostgreSQL only, from crates.io) when missing.
source "$(dirname "$0")/lib.sh"

DIESEL_CLI_VERSION="2.3.4"
SCHEMA="$ROOT/crates/coupon-store-pg/src/schema.rs"

if ! command -v diesel >/dev/null; then
    [ -e /usr/include/postgresql/libpq-fe.h ] || apt_install libpq-dev
    log "installing diesel_cli $DIESEL_CLI_VERSION from crates.io (once per machine)"
    cargo install diesel_cli --version "$DIESEL_CLI_VERSION" --no-default-features --features postgres --locked --quiet ||
        die "cargo install diesel_cli failed"
fi

ensure_postgres
scratch="coupon_schema_$$"
url="postgres://$DATABASE_USER@$DATABASE_HOST:$DATABASE_PORT/$scratch"
psql -h "$DATABASE_HOST" -p "$DATABASE_PORT" -U "$DATABASE_USER" -d postgres -qc "CREATE DATABASE $scratch"
trap 'psql -h "$DATABASE_HOST" -p "$DATABASE_PORT" -U "$DATABASE_USER" -d postgres -qc "DROP DATABASE IF EXISTS $scratch WITH (FORCE)"' EXIT
cd "$ROOT"
# The service's own migration step, as a release applies it.
export DATABASE_HOST DATABASE_PORT DATABASE_USER
DATABASE_NAME=$scratch LOG_LEVEL=warn cargo run --quiet -p api-server -- migrate >/dev/null
generated="$(mktemp)"
diesel print-schema --database-url "$url" --config-file diesel.toml >"$generated"

if [ "${1:-}" = "--write" ]; then
    cp "$generated" "$SCHEMA"
    log "wrote $SCHEMA"
elif diff -u "$SCHEMA" "$generated"; then
    log "schema.rs matches the migrations"
else
    die "schema.rs differs from what diesel print-schema makes of migrations/ (run deploy/local/schema.sh --write)"
fi
