"""Stops every writer of MLflow's databases before a schema migration, and starts them again after:

    python rollout.py quiesce <tracking database URI> <auth database URI>
    python rollout.py resume

MLflow's upgrade guide says: stop the server, back up, migrate, restart. Migrations are not
guaranteed to be transactional, and an old server must never write into a schema being altered.
`pulumi up` runs, in this order: the quiesce Job, the migration Job (backup, then migrate.py),
the Deployment's new pods, the resume Job.

quiesce compares each database's Alembic revision with the heads of this image's migrations:
- the same (a config change, a release without migrations): nothing is stopped, and the rollout
  goes on as a rolling update without downtime;
- different (or an empty database): the CronJobs that write (ROLLOUT_CRONJOBS: garbage collection,
  serving grants, the scheduled backup) are suspended, the tracking server's Deployment
  (ROLLOUT_DEPLOYMENT) is scaled to zero, and the step waits until no pod of it is left (its status,
  then its termination grace period) and no other session is connected to either database. Only
  then may the backup and the migration run. Each object changed is marked with an annotation, so
  that resume restarts exactly what quiesce stopped (a CronJob an operator suspended stays suspended).
resume scales the Deployment back to its replica count before the migration when it is still at
zero (an autoscaled Deployment, which Pulumi does not scale), resumes the marked CronJobs and
removes the marks. Both steps are idempotent: a failed update leaves the server stopped, and the
next `pulumi up` goes on from there.

The Kubernetes API is reached with the pod's ServiceAccount token (a Role granting get and patch
on exactly these objects); the database login comes from PGUSER/PGPASSWORD.
"""

import datetime
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
FIELD_MANAGER = "mlflow-schema-rollout"
HELD = "mlflow-k8s/held-for-migration"
REPLICAS_BEFORE = "mlflow-k8s/replicas-before-migration"
STOPPED_AT = "mlflow-k8s/stopped-for-migration-at"
# Seconds past a pod's termination grace period before it is taken as gone: the kubelet has killed
# it by then.
GRACE_MARGIN_SECONDS = 2
POLL_SECONDS = 1


def log(message):
    print(f"rollout: {message}", flush=True)


def now():
    return datetime.datetime.now(datetime.timezone.utc)


# --- what the migration would change ---------------------------------------------------------


def pending_migrations(current, heads):
    """The databases whose revision is not this image's head, as {name: (current, head)}.

    `current` and `heads` map a database ("tracking", "auth") to its revision (None: no schema yet).
    """
    return {db: (current.get(db), heads[db]) for db in heads if current.get(db) != heads[db]}


def image_heads():
    """The head revision of this image's tracking and auth migrations."""
    from alembic.script import ScriptDirectory
    from mlflow.server.auth.db import utils as auth_utils
    from mlflow.store.db.utils import _get_latest_schema_revision

    return {
        "tracking": _get_latest_schema_revision(),
        "auth": ScriptDirectory.from_config(auth_utils._get_alembic_config("")).get_current_head(),
    }


def database_revisions(engines):
    """Each database's current Alembic revision (None when it has no schema yet)."""
    from alembic.migration import MigrationContext

    tables = {"tracking": "alembic_version", "auth": "alembic_version_auth"}
    out = {}
    for db, engine in engines.items():
        with engine.connect() as conn:
            out[db] = MigrationContext.configure(conn, opts={"version_table": tables[db]}).get_current_revision()
        # Its pooled connection would count as another session.
        engine.dispose()
    return out


def other_sessions(engine, databases):
    """Sessions connected to `databases` other than this one: (pid, user, database, application, client, since)."""
    from sqlalchemy import text

    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT pid, usename, datname, application_name, client_addr::text, backend_start "
            "FROM pg_stat_activity WHERE datname = ANY(:dbs) AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        ), {"dbs": list(databases)}).fetchall()
    return [tuple(r) for r in rows]


# --- the Kubernetes API ----------------------------------------------------------------------


class Kube:
    """The few calls these steps make, as the pod's ServiceAccount."""

    def __init__(self, sa_dir=SA_DIR, env=os.environ):
        host, port = env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"]
        self.base = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
        self.sa_dir = sa_dir
        with open(os.path.join(sa_dir, "namespace")) as f:
            self.namespace = f.read().strip()
        tls = ssl.create_default_context(cafile=os.path.join(sa_dir, "ca.crt"))
        # Straight to the API server, whatever HTTPS_PROXY an escape hatch sets for the other pods:
        # Python ignores CIDRs in NO_PROXY, and the NetworkPolicy admits the API server only.
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=tls))

    def call(self, method, path, body=None):
        """The object, or None on 404. Other errors raise with the API server's message."""
        # The kubelet refreshes the projected token: read it for every call.
        with open(os.path.join(self.sa_dir, "token")) as f:
            token = f.read().strip()
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/merge-patch+json"
            data = json.dumps(body).encode()
        url = f"{self.base}{path}" + (f"?fieldManager={FIELD_MANAGER}" if method == "PATCH" else "")
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with self.opener.open(req, timeout=30) as res:
                return json.load(res)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            detail = e.read().decode(errors="replace")
            try:
                detail = json.loads(detail).get("message", detail)
            except ValueError:
                pass
            raise RuntimeError(f"{method} {path}: {e.code} {detail}") from None

    def deployment(self, name):
        return f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{name}"

    def cronjob(self, name):
        return f"/apis/batch/v1/namespaces/{self.namespace}/cronjobs/{name}"


def annotations(obj):
    return (obj.get("metadata") or {}).get("annotations") or {}


def hold_cronjobs(kube, names):
    """Suspends each CronJob not suspended yet, marking it; returns the names held by this rollout."""
    held = []
    for name in names:
        cj = kube.call("GET", kube.cronjob(name))
        if cj is None:
            continue
        if annotations(cj).get(HELD) == "true":
            held.append(name)
        elif not cj["spec"].get("suspend", False):
            kube.call("PATCH", kube.cronjob(name), {"metadata": {"annotations": {HELD: "true"}}, "spec": {"suspend": True}})
            held.append(name)
        else:
            log(f"CronJob {name} was already suspended: left as it is")
    return held


def stop_deployment(kube, name):
    """Scales the Deployment to zero, marking its replica count; returns (stopped at, grace seconds) or None."""
    d = kube.call("GET", kube.deployment(name))
    if d is None:
        return None
    grace = d["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
    marks = annotations(d)
    if REPLICAS_BEFORE in marks:
        # An earlier attempt stopped it: keep the count it had then.
        stopped_at = datetime.datetime.fromisoformat(marks[STOPPED_AT])
    else:
        replicas = d["spec"].get("replicas", 1)
        stopped_at = now()
        kube.call("PATCH", kube.deployment(name), {
            "metadata": {"annotations": {REPLICAS_BEFORE: str(replicas), STOPPED_AT: stopped_at.isoformat()}},
            "spec": {"replicas": 0},
        })
        log(f"Deployment {name}: scaled from {replicas} to 0 replicas")
    return stopped_at, grace


def pods_left(deployment):
    status = deployment.get("status") or {}
    return (status.get("replicas") or 0) + (status.get("terminatingReplicas") or 0)


def quiesce(tracking_uri, auth_uri, env=os.environ, kube=None, engines=None, clock=time):
    if engines is None:
        from sqlalchemy import create_engine

        engines = {"tracking": create_engine(tracking_uri), "auth": create_engine(auth_uri)}
    heads = image_heads()
    pending = pending_migrations(database_revisions(engines), heads)
    if not pending:
        log(f"schema up to date (tracking {heads['tracking']}, auth {heads['auth']}): no writer stopped, "
            "the rollout replaces the pods one by one")
        return 0
    for db, (current, head) in sorted(pending.items()):
        log(f"{db} database at {current or 'no schema'}, this image migrates it to {head}: stopping every writer first")

    kube = kube or Kube(env=env)
    deployment = env["ROLLOUT_DEPLOYMENT"]
    cronjobs = [c for c in env.get("ROLLOUT_CRONJOBS", "").split(",") if c]
    timeout = int(env.get("ROLLOUT_TIMEOUT_SECONDS", "600"))
    held = hold_cronjobs(kube, cronjobs)
    if held:
        log(f"CronJobs suspended until the new server runs: {', '.join(held)}")
    stopped = stop_deployment(kube, deployment)
    databases = [engines[db].url.database for db in ("tracking", "auth")]

    started = clock.monotonic()
    while True:
        waiting = []
        if stopped is not None:
            d = kube.call("GET", kube.deployment(deployment))
            left = pods_left(d) if d is not None else 0
            if left > 0:
                waiting.append(f"{left} pod(s) of {deployment}")
            elif "terminatingReplicas" not in (d or {}).get("status", {}):
                # API servers before the terminatingReplicas status count pods as gone once they are
                # terminating: the kubelet has killed them when their grace period is over.
                until = stopped[0] + datetime.timedelta(seconds=stopped[1] + GRACE_MARGIN_SECONDS)
                if now() < until:
                    waiting.append(f"the stopped pods' grace period (until {until.isoformat(timespec='seconds')})")
        sessions = other_sessions(engines["tracking"], databases)
        if sessions:
            waiting.append(f"{len(sessions)} other session(s): " + "; ".join(
                f"pid {pid} {user}@{db} {app or '-'} from {client or 'local'} since {since}" for pid, user, db, app, client, since in sessions))
        if not waiting:
            break
        if clock.monotonic() - started > timeout:
            log(f"FAILED: after {timeout} s still waiting for {', '.join(waiting)}. Nothing was migrated; the server stays "
                "stopped. Find what holds the database (the sessions above), stop it, and run `pulumi up` again.")
            return 1
        clock.sleep(POLL_SECONDS)
    log(f"no writer left after {clock.monotonic() - started:.1f} s: the backup and the migration may run")
    engines["tracking"].dispose()
    return 0


def resume(env=os.environ, kube=None, clock=time):
    kube = kube or Kube(env=env)
    deployment = env["ROLLOUT_DEPLOYMENT"]
    d = kube.call("GET", kube.deployment(deployment))
    if d is not None and REPLICAS_BEFORE in annotations(d):
        before = int(annotations(d)[REPLICAS_BEFORE])
        patch = {"metadata": {"annotations": {REPLICAS_BEFORE: None, STOPPED_AT: None}}}
        scaled = (d["spec"].get("replicas") or 0) == 0
        if scaled:
            # An autoscaled Deployment: Pulumi leaves its replicas to the autoscaler, which does not
            # scale a Deployment at zero.
            patch["spec"] = {"replicas": before}
            log(f"Deployment {deployment}: scaled back to {before} replicas")
        kube.call("PATCH", kube.deployment(deployment), patch)
        if scaled:
            # Pulumi waited for a Deployment at zero: the update ends once a pod serves again.
            timeout = int(env.get("ROLLOUT_TIMEOUT_SECONDS", "600"))
            started = clock.monotonic()
            while ((kube.call("GET", kube.deployment(deployment)) or {}).get("status") or {}).get("availableReplicas", 0) < 1:
                if clock.monotonic() - started > timeout:
                    log(f"FAILED: no pod of {deployment} became available within {timeout} s; "
                        f"kubectl describe deployment {deployment} says why")
                    return 1
                clock.sleep(POLL_SECONDS)
            log(f"Deployment {deployment}: available again after {clock.monotonic() - started:.1f} s")
    resumed = []
    for name in [c for c in env.get("ROLLOUT_CRONJOBS", "").split(",") if c]:
        cj = kube.call("GET", kube.cronjob(name))
        if cj is not None and annotations(cj).get(HELD) == "true":
            kube.call("PATCH", kube.cronjob(name), {"metadata": {"annotations": {HELD: None}}, "spec": {"suspend": False}})
            resumed.append(name)
    log(f"CronJobs resumed: {', '.join(resumed)}" if resumed else "nothing was held for a migration")
    return 0


def main(argv):
    if len(argv) == 4 and argv[1] == "quiesce":
        return quiesce(argv[2], argv[3])
    if len(argv) == 2 and argv[1] == "resume":
        return resume()
    print("usage: rollout.py quiesce <tracking database URI> <auth database URI> | rollout.py resume", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
