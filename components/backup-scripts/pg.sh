#!/bin/bash
# The PostgreSQL side of backups and restores, run in the PostgreSQL image (the server's major
# version, so pg_dump and pg_restore always match it).
#
#   pg.sh dump      dump every database of $BACKUP_DATABASES into $BACKUP_DIR (custom format)
#   pg.sh restore   restore them from $BACKUP_DIR; refuses a database that is not empty unless
#                   RESTORE_FORCE=true, and creates one that is missing
#
# Connection: PGHOST, PGPORT, PGUSER and PGPASSWORD (the application role, which owns the
# databases); for restore of the in-cluster database also POSTGRES_USER and POSTGRES_PASSWORD (the
# superuser, to create a missing database; an external database's must exist). No password is
# ever on a command line. PGSSLMODE and PGSSLROOTCERT, when set, secure the connection.
set -euo pipefail

log() { printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }
fail() { log "ERROR: $*"; exit "${2:-1}"; }

: "${BACKUP_DIR:?BACKUP_DIR is not set}"
: "${BACKUP_DATABASES:?BACKUP_DATABASES is not set}"
export PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-10}"

# Relations in a database outside the system schemas: 0 means there is nothing to lose.
relations() {
    psql -X -A -t -q -v ON_ERROR_STOP=1 --dbname="$1" <<'SQL'
SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%';
SQL
}

# pg_database is readable by every role: on an external database (no superuser here) the login
# role asks.
database_exists() {
    superuser_if_any psql -X -A -t -q -v ON_ERROR_STOP=1 --dbname=postgres -v db="$1" <<'SQL'
SELECT count(*) FROM pg_database WHERE datname = :'db';
SQL
}

superuser_if_any() {
    if [ -n "${POSTGRES_USER:-}" ]; then as_superuser "$@"; else "$@"; fi
}

as_superuser() {
    PGUSER="${POSTGRES_USER:?POSTGRES_USER is not set}" PGPASSWORD="${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is not set}" "$@"
}

dump() {
    mkdir -p "$BACKUP_DIR"
    rm -f "$BACKUP_DIR"/*.dump "$BACKUP_DIR"/*.partial
    for db in $BACKUP_DATABASES; do
        log "dumping $db from $PGHOST:$PGPORT"
        # Written under another name first: an interrupted dump never looks complete.
        pg_dump --format=custom --compress=6 --no-password --dbname="$db" --file="$BACKUP_DIR/$db.dump.partial" \
            || fail "pg_dump of $db failed; no backup was taken"
        mv "$BACKUP_DIR/$db.dump.partial" "$BACKUP_DIR/$db.dump"
        log "dumped $db: $(stat -c %s "$BACKUP_DIR/$db.dump") bytes"
    done
    psql -X -A -t -q -v ON_ERROR_STOP=1 --dbname="${BACKUP_DATABASES%% *}" -c 'SHOW server_version' > "$BACKUP_DIR/server_version"
    pg_dump --version > "$BACKUP_DIR/pg_dump_version"
}

restore() {
    local force="${RESTORE_FORCE:-false}"
    for db in $BACKUP_DATABASES; do
        [ -s "$BACKUP_DIR/$db.dump" ] || fail "$BACKUP_DIR/$db.dump is missing; the fetch step did not complete"
    done
    # Check every database before touching any: a refusal changes nothing.
    for db in $BACKUP_DATABASES; do
        local exists
        exists="$(database_exists "$db")"
        if [ "$exists" = "0" ]; then
            [ -n "${POSTGRES_USER:-}" ] || fail "database $db does not exist on $PGHOST; an external database's operators create it, owned by $PGUSER, before a restore" 5
            continue
        fi
        local n
        n="$(relations "$db")"
        if [ "$n" != "0" ] && [ "$force" != "true" ]; then
            fail "database $db is not empty ($n relations); refusing to restore over it. Run the restore with --force to replace its contents." 3
        fi
    done
    for db in $BACKUP_DATABASES; do
        local exists
        exists="$(database_exists "$db")"
        if [ "$exists" = "0" ]; then
            log "creating missing database $db, owned by $PGUSER"
            # The same statements as the first start's init SQL.
            as_superuser psql -X -q -v ON_ERROR_STOP=1 --dbname=postgres -v db="$db" -v owner="$PGUSER" <<'SQL'
CREATE DATABASE :"db" OWNER :"owner";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
SQL
        fi
        log "restoring $db"
        if [ "$(relations "$db")" != "0" ]; then
            # --force: everything the application role owns there goes first, in the same transaction
            # as the restore. pg_restore's --clean would drop only what the dump holds, and a newer
            # schema (an upgrade being rolled back) has tables whose constraints block that.
            log "replacing the contents of $db (--force)"
            # COMMIT is sent only once pg_restore has written the whole script: if it fails part way,
            # psql reaches the end of its input inside the transaction, which is then rolled back.
            { echo 'BEGIN;'; echo 'DROP OWNED BY CURRENT_USER;'
              pg_restore --no-owner -f - "$BACKUP_DIR/$db.dump" || exit 1
              echo 'COMMIT;'; } \
                | psql -X -q -v ON_ERROR_STOP=1 --dbname="$db" -f - > /dev/null \
                || fail "restore of $db failed; its transaction was rolled back"
        else
            pg_restore --exit-on-error --single-transaction --no-owner --no-password \
                --dbname="$db" "$BACKUP_DIR/$db.dump" || fail "pg_restore of $db failed; its transaction was rolled back"
        fi
        psql -X -q -v ON_ERROR_STOP=1 --dbname="$db" -c 'ANALYZE' > /dev/null
        log "restored $db: $(relations "$db") relations"
    done
}

case "${1:-}" in
    dump) dump ;;
    restore) restore ;;
    *) fail "usage: pg.sh dump|restore" 2 ;;
esac
