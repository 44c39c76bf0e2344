"""Keeps the model servers' MLflow users as the stack says, straight in MLflow's databases:

    python serving.py <tracking database URI> <auth database URI>

SERVED_MODELS (JSON) lists `{"user", "model", "alias" | "version", "passwordEnv"}`; each user's
password is in the variable `passwordEnv` names (from the model's Secret). For each entry:

1. the user exists, not an admin, with the Secret's password;
2. it may READ the registered model, and the experiment holding the files of the version the
   alias (or the version number) points at now: MLflow's artifact proxy checks the experiment
   (a registered-model grant alone gets 403 on the download);
3. no other grant: an experiment the alias used to point into is revoked.

Run by the migration Job (every `pulumi up` that changes it) and by a CronJob, so that moving an
alias into another experiment is followed within minutes. A model or alias not registered yet
gets the registered-model grant only, and a line saying so. Idempotent.
"""

import json
import os
import re
import sys

READ = "READ"


def log(message):
    print(f"serving: {message}", flush=True)


def experiment_of(registry, model, alias, version):
    """The experiment id of the files of the version `alias` or `version` names, or None."""
    from mlflow.exceptions import MlflowException

    try:
        mv = registry.get_model_version_by_alias(model, alias) if alias else registry.get_model_version(model, str(version))
        uri = registry.get_model_version_download_uri(model, mv.version)
    except MlflowException as e:
        ref = f"{model}@{alias}" if alias else f"{model}/{version}"
        log(f"{ref} is not registered yet ({e.error_code}): READ on the registered model only")
        return None, None
    # The server stores artifacts behind its proxy: mlflow-artifacts:/<experiment id>/...
    m = re.match(r"^mlflow-artifacts:/+(\d+)/", uri)
    if m is None:
        raise SystemExit(f"serving: {model} version {mv.version} lives at {uri}, outside the server's artifact proxy")
    return m.group(1), mv.version


def sync_user(auth, entry):
    user = entry["user"]
    password = os.environ[entry["passwordEnv"]]
    if auth.has_user(user, use_primary=True):
        existing = auth.get_user(user)
        if existing.is_admin:
            raise SystemExit(f"serving: {user} is an admin; a model server's user must not be (rename the served model or the admin)")
        auth.update_user(user, password=password)
    else:
        auth.create_user(user, password, is_admin=False)
        log(f"created user {user}")


def sync_grants(auth, registry, entry):
    user, model = entry["user"], entry["model"]
    alias, version = entry.get("alias"), entry.get("version")
    experiment, resolved = experiment_of(registry, model, alias, version)
    wanted = {("registered_model", model)} | ({("experiment", experiment)} if experiment else set())
    for resource_type, pattern in sorted(wanted):
        auth.grant_user_permission(user, resource_type, pattern, READ)
    current = {("registered_model", p.name) for p in auth.list_registered_model_permissions(user)}
    current |= {("experiment", p.experiment_id) for p in auth.list_experiment_permissions(user)}
    for resource_type, pattern in sorted(current - wanted):
        auth.revoke_user_resource_permission(user, resource_type, pattern)
        log(f"{user}: revoked {resource_type} {pattern}")
    target = f"version {resolved} in experiment {experiment}" if experiment else "nothing registered yet"
    log(f"{user}: READ on registered model {model} ({target})")


def sync(tracking_uri, auth_uri):
    entries = json.loads(os.environ.get("SERVED_MODELS", "[]"))
    if not entries:
        log("no served models")
        return
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore as AuthStore
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore

    auth = AuthStore()
    auth.init_db(auth_uri)
    registry = RegistryStore(tracking_uri)
    try:
        for entry in entries:
            sync_user(auth, entry)
            sync_grants(auth, registry, entry)
    finally:
        auth.engine.dispose()
        registry.engine.dispose()


def main():
    if len(sys.argv) != 3:
        print("usage: serving.py <tracking database URI> <auth database URI>", file=sys.stderr)
        sys.exit(2)
    sync(*sys.argv[1:])


if __name__ == "__main__":
    main()
