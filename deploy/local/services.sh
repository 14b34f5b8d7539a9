#!/usr/bin/env bash
# Makes PostgreSQL, Redis and the Kafka broker reachable (installing and starting what is missing)
# and creates the service database with its schema.
source "$(dirname "$0")/lib.sh"

ensure_services
ensure_database "$DATABASE_NAME"
log "applying migrations to $DATABASE_NAME"
(cd "$ROOT" && cargo run --quiet -p api-server -- migrate)
log "services ready"
