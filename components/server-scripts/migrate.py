"""Brings MLflow's two databases to this release's schema, then makes the admin user match the
stack, in one interpreter (importing MLflow costs seconds; three processes would pay it three times):

    python migrate.py <tracking database URI> <auth database URI>

1. the tracking schema: what `mlflow db upgrade <uri>` runs (an empty database gets every table);
2. the auth schema: what `python -m mlflow.server.auth db upgrade --url <uri>` runs;
3. the admin: the configured name (MLFLOW_AUTH_ADMIN_USERNAME), the password of the stack's Secret
   (MLFLOW_AUTH_ADMIN_PASSWORD), the admin flag; created when missing. Other admin users are left as
   they are and listed: a renamed admin keeps its old account until someone removes it on purpose;
4. the model servers' users and grants (serving.py, next to this file), when SERVED_MODELS lists any.

Before changing a schema it checks that nothing else is connected to either database: the quiesce
Job (rollout.py) stopped every writer, and a migration under a live server would alter the tables
it writes to. It refuses otherwise, naming the sessions, and changes nothing.

The database login comes from PGUSER/PGPASSWORD. Every step is idempotent.
"""

import os
import sys
import time


def step(name, fn):
    # Wall-clock times too: the contract tests line them up with the old server's exit.
    started, wall = time.monotonic(), time.time()
    print(f"migrate: {name} started at {wall:.3f}", flush=True)
    fn()
    print(f"migrate: {name} done in {time.monotonic() - started:.1f} s (at {time.time():.3f})", flush=True)


def check_no_writer(tracking_uri, auth_uri):
    """Exits non-zero when a schema would change while another session is connected."""
    from sqlalchemy import create_engine

    import rollout

    engines = {"tracking": create_engine(tracking_uri), "auth": create_engine(auth_uri)}
    pending = rollout.pending_migrations(rollout.database_revisions(engines), rollout.image_heads())
    if not pending:
        print("migrate: both schemas are at this image's heads: no migration", flush=True)
        return
    for db, (current, head) in sorted(pending.items()):
        print(f"migrate: {db} schema {current or '(none)'} -> {head}", flush=True)
    sessions = rollout.other_sessions(engines["tracking"], [e.url.database for e in engines.values()])
    engines["tracking"].dispose()
    if sessions:
        print(f"migrate: FAILED: {len(sessions)} other session(s) are connected; a migration under a live writer could "
              "corrupt its writes. Nothing was changed. Sessions: " + "; ".join(
                  f"pid {pid} {user}@{db} {app or '-'} from {client or 'local'}" for pid, user, db, app, client, _ in sessions),
              file=sys.stderr, flush=True)
        sys.exit(3)


def sync_admin(auth_uri):
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    username = os.environ["MLFLOW_AUTH_ADMIN_USERNAME"]
    password = os.environ["MLFLOW_AUTH_ADMIN_PASSWORD"]
    store = SqlAlchemyStore()
    store.init_db(auth_uri)
    if store.has_user(username, use_primary=True):
        store.update_user(username, password=password, is_admin=True)
        print(f"migrate: {username} is an admin with the password of the stack's Secret", flush=True)
    else:
        store.create_user(username, password, is_admin=True)
        print(f"migrate: created admin {username}", flush=True)
    others = sorted(u.username for u in store.list_users() if u.is_admin and u.username != username)
    if others:
        print(f"migrate: other admin users, left as they are: {', '.join(others)}", flush=True)
    store.engine.dispose()


def main():
    if len(sys.argv) != 3:
        print("usage: migrate.py <tracking database URI> <auth database URI>", file=sys.stderr)
        sys.exit(2)
    tracking_uri, auth_uri = sys.argv[1:]
    # The commands' own code, called in this process instead of through their command lines.
    from mlflow.db import upgrade as tracking_upgrade
    from mlflow.server.auth.db.cli import upgrade as auth_upgrade

    step("writers stopped", lambda: check_no_writer(tracking_uri, auth_uri))
    step("tracking schema", lambda: tracking_upgrade.callback(tracking_uri))
    step("auth schema", lambda: auth_upgrade.callback(url=auth_uri, revision="head"))
    step("admin user", lambda: sync_admin(auth_uri))
    if os.environ.get("SERVED_MODELS", "[]") != "[]":
        import serving

        step("model servers' users", lambda: serving.sync(tracking_uri, auth_uri))


if __name__ == "__main__":
    main()
