#!/bin/bash
# Runs before PostgreSQL starts, on every start: makes the passwords stored in the data directory
# equal to the ones in the credentials Secret (the environment), so the Secret is the only truth.
# A volume kept across `pulumi destroy` (postgresVolumeRetention: Retain) or a password replaced in
# Pulumi would otherwise lock MLflow out of its own database.
#
# Single-user mode: no server, no network, nothing listening; the SQL goes in on stdin, never in
# argv. On an empty volume there is nothing to do: the image's entrypoint initialises it.
set -euo pipefail
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    echo "sync-passwords: no data directory yet; the first start initialises it"
    exit 0
fi
quote_literal() { printf "'%s'" "${1//\'/\'\'}"; }
quote_ident() { printf '"%s"' "${1//\"/\"\"}"; }
{
    echo "ALTER ROLE $(quote_ident "$POSTGRES_USER") PASSWORD $(quote_literal "$POSTGRES_PASSWORD");"
    echo "ALTER ROLE $(quote_ident "$MLFLOW_DB_USER") PASSWORD $(quote_literal "$MLFLOW_DB_PASSWORD");"
} | postgres --single -D "$PGDATA" -c listen_addresses='' -c log_statement=none postgres > /dev/null
echo "sync-passwords: passwords of $POSTGRES_USER and $MLFLOW_DB_USER match the credentials Secret"
