#!/bin/sh
# The image's `migrate` command: applies pending migrations (they are compiled into api-server)
# and exits 0, or non-zero when the database cannot be migrated.
exec api-server migrate "$@"
