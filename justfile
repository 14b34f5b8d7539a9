# Coupon service tasks. The recipes call the scripts in deploy/local/, which also work without just.

_default:
    @just --list

# Bring up PostgreSQL, Redis and Kafka (installing what is missing) and run the three binaries; Ctrl-C stops them
dev:
    deploy/local/dev.sh

# Make PostgreSQL, Redis and Kafka reachable, create the database and apply migrations
services:
    deploy/local/services.sh

# Stop the services that the local scripts started under .local/
stop:
    deploy/local/stop.sh

# Run the whole test suite against the real services (extra arguments go to the test runner)
test *ARGS:
    deploy/local/test.sh {{ARGS}}

# Apply pending migrations to DATABASE_NAME (default coupon_db)
migrate:
    cargo run --quiet -p api-server -- migrate

# Run one binary in the foreground against the local services
api-server:
    cargo run -p api-server
event-worker:
    cargo run -p event-worker
scheduler:
    cargo run -p scheduler

# Format the code
fmt:
    cargo fmt --all

# Formatting check and clippy with warnings as errors (what CI runs)
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --locked -- -D warnings

# Fault injection on release binaries under load, a row per scenario (see deploy/local/faults.sh)
faults *ARGS:
    deploy/local/faults.sh {{ARGS}}

# Benchmarks that print numbers, e.g. `just bench issue` (see deploy/local/bench.sh)
bench *ARGS:
    deploy/local/bench.sh {{ARGS}}

# Produce one record (its value read from standard input) to a topic of the local broker, e.g. a payment.completed
publish TOPIC KEY:
    cargo run --quiet -p coupon-e2e --bin publish -- {{TOPIC}} {{KEY}}

# Check that schema.rs is what diesel print-schema makes of migrations/ (`just schema --write` regenerates it)
schema *ARGS:
    deploy/local/schema.sh {{ARGS}}
