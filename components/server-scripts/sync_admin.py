"""Makes the MLflow admin user match the stack: the configured name, the generated password from
the Secret, the admin flag. Run before every server start (an init container) and by the migration
Job, so the `adminPassword` stack output always logs in, even after someone changed the password
in the UI or the password was regenerated.

    python sync_admin.py <auth database URI>

The name and password come from MLFLOW_AUTH_ADMIN_USERNAME and MLFLOW_AUTH_ADMIN_PASSWORD (a
secretKeyRef), the database login from PGUSER/PGPASSWORD. Other admin users are left as they are
and listed: a renamed admin keeps its old account until someone removes it on purpose.
"""

import os
import sys

from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore


def main():
    if len(sys.argv) != 2:
        print("usage: sync_admin.py <auth database URI>", file=sys.stderr)
        sys.exit(2)
    username = os.environ["MLFLOW_AUTH_ADMIN_USERNAME"]
    password = os.environ["MLFLOW_AUTH_ADMIN_PASSWORD"]
    store = SqlAlchemyStore()
    store.init_db(sys.argv[1])
    if store.has_user(username, use_primary=True):
        store.update_user(username, password=password, is_admin=True)
        print(f"sync-admin: {username} is an admin with the password of the stack's Secret")
    else:
        store.create_user(username, password, is_admin=True)
        print(f"sync-admin: created admin {username}")
    others = sorted(u.username for u in store.list_users() if u.is_admin and u.username != username)
    if others:
        print(f"sync-admin: other admin users, left as they are: {', '.join(others)}")


if __name__ == "__main__":
    main()
