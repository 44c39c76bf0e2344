"""Unit tests of rollout.py's decisions, with the API server, the databases and the clock faked
(the contract tests run it for real: test/integration/rollout.spec.ts).

    python3 -m unittest discover -s test/python -p test_rollout.py   (npm run test:scripts; the standard library only)
"""

import datetime
import io
import os
import sys
import unittest
from contextlib import redirect_stdout
from unittest import mock

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "components", "server-scripts"))

import rollout  # noqa: E402

DEPLOYMENT = "mlflow-tracking-server"
HEADS = {"tracking": "new-t", "auth": "new-a"}


class FakeKube:
    """The objects by API path; records every PATCH; the Deployment's status follows its replicas
    after `lag` GETs (the controller), with or without the terminatingReplicas count."""

    def __init__(self, objects, lag=0, terminating=True):
        self.objects = objects
        self.patches = []
        self.gets = 0
        self.lag = lag
        self.terminating = terminating

    def deployment(self, name):
        return f"deployments/{name}"

    def cronjob(self, name):
        return f"cronjobs/{name}"

    def call(self, method, path, body=None):
        obj = self.objects.get(path)
        if method == "GET":
            self.gets += 1
            if obj is not None and path.startswith("deployments/") and self.gets > self.lag:
                replicas = obj["spec"].get("replicas", 1)
                obj["status"] = {"replicas": replicas, "availableReplicas": replicas}
                if self.terminating:
                    obj["status"]["terminatingReplicas"] = 0
            return obj
        self.patches.append((path, body))
        merge(obj, body)
        return obj


def merge(target, patch):
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, dict):
            merge(target.setdefault(k, {}), v)
        else:
            target[k] = v


class Clock:
    def __init__(self):
        self.t = 0.0

    def monotonic(self):
        return self.t

    def sleep(self, s):
        self.t += s


def deployment(replicas=2, annotations=None):
    return {"metadata": {"annotations": dict(annotations or {})},
            "spec": {"replicas": replicas, "template": {"spec": {"terminationGracePeriodSeconds": 30}}},
            "status": {"replicas": replicas}}


def cronjob(suspend=False, annotations=None):
    return {"metadata": {"annotations": dict(annotations or {})}, "spec": {"suspend": suspend}}


ENV = {"ROLLOUT_DEPLOYMENT": DEPLOYMENT, "ROLLOUT_CRONJOBS": "mlflow-gc,mlflow-db-backup", "ROLLOUT_TIMEOUT_SECONDS": "60"}


class Engine:
    def __init__(self, database):
        self.url = mock.Mock(database=database)

    def dispose(self):
        pass


def run_quiesce(kube, revisions, sessions=lambda: [], clock=None):
    engines = {"tracking": Engine("mlflow"), "auth": Engine("mlflow_auth")}
    out = io.StringIO()
    with mock.patch.object(rollout, "image_heads", return_value=HEADS), \
            mock.patch.object(rollout, "database_revisions", return_value=revisions), \
            mock.patch.object(rollout, "other_sessions", side_effect=lambda *_: sessions()), redirect_stdout(out):
        code = rollout.quiesce("t", "a", env=ENV, kube=kube, engines=engines, clock=clock or Clock())
    return code, out.getvalue()


class PendingMigrations(unittest.TestCase):
    def test_nothing_pending_at_the_heads(self):
        self.assertEqual(rollout.pending_migrations(dict(HEADS), HEADS), {})

    def test_each_database_that_differs(self):
        self.assertEqual(rollout.pending_migrations({"tracking": "old", "auth": "new-a"}, HEADS), {"tracking": ("old", "new-t")})

    def test_an_empty_database_is_pending(self):
        self.assertEqual(rollout.pending_migrations({"tracking": None, "auth": None}, HEADS),
                         {"tracking": (None, "new-t"), "auth": (None, "new-a")})


class Quiesce(unittest.TestCase):
    def objects(self, **kw):
        return {"deployments/" + DEPLOYMENT: deployment(**kw), "cronjobs/mlflow-gc": cronjob(), "cronjobs/mlflow-db-backup": cronjob()}

    def test_stops_nothing_when_the_schema_is_at_the_heads(self):
        kube = FakeKube(self.objects())
        code, out = run_quiesce(kube, dict(HEADS))
        self.assertEqual(code, 0)
        self.assertEqual(kube.patches, [])
        self.assertIn("no writer stopped", out)

    def test_a_migration_suspends_the_writers_and_scales_the_server_to_zero(self):
        kube = FakeKube(self.objects(replicas=3))
        code, out = run_quiesce(kube, {"tracking": "old", "auth": "new-a"})
        self.assertEqual(code, 0, out)
        d = kube.objects["deployments/" + DEPLOYMENT]
        self.assertEqual(d["spec"]["replicas"], 0)
        self.assertEqual(d["metadata"]["annotations"][rollout.REPLICAS_BEFORE], "3")
        for name in ("mlflow-gc", "mlflow-db-backup"):
            cj = kube.objects["cronjobs/" + name]
            self.assertTrue(cj["spec"]["suspend"])
            self.assertEqual(cj["metadata"]["annotations"][rollout.HELD], "true")
        # The CronJobs first: none starts while the server goes.
        self.assertEqual([p for p, _ in kube.patches], ["cronjobs/mlflow-gc", "cronjobs/mlflow-db-backup", "deployments/" + DEPLOYMENT])

    def test_leaves_a_cronjob_an_operator_suspended_unmarked(self):
        objects = self.objects()
        objects["cronjobs/mlflow-gc"] = cronjob(suspend=True)
        kube = FakeKube(objects)
        run_quiesce(kube, {"tracking": "old", "auth": "new-a"})
        self.assertNotIn(rollout.HELD, objects["cronjobs/mlflow-gc"]["metadata"]["annotations"])

    def test_waits_for_every_other_session_and_fails_naming_them(self):
        kube = FakeKube(self.objects())
        session = (42, "mlflow", "mlflow", "psql", "10.0.0.7", "2026-12-04")
        code, out = run_quiesce(kube, {"tracking": "old", "auth": "new-a"}, sessions=lambda: [session])
        self.assertEqual(code, 1)
        self.assertIn("FAILED: after 60 s still waiting for 1 other session(s): pid 42 mlflow@mlflow psql from 10.0.0.7", out)
        self.assertIn("Nothing was migrated", out)

    def test_goes_on_once_the_sessions_are_gone(self):
        kube = FakeKube(self.objects())
        clock = Clock()
        code, out = run_quiesce(kube, {"tracking": "old", "auth": "new-a"},
                                sessions=lambda: [(1, "mlflow", "mlflow", "", "", "")] if clock.t < 5 else [], clock=clock)
        self.assertEqual(code, 0, out)
        self.assertGreaterEqual(clock.t, 5)

    def test_waits_for_pods_the_status_still_counts(self):
        kube = FakeKube(self.objects(), lag=4)
        clock = Clock()
        code, _ = run_quiesce(kube, {"tracking": "old", "auth": "new-a"}, clock=clock)
        self.assertEqual(code, 0)
        self.assertGreater(clock.t, 0)

    def test_without_a_terminating_count_waits_out_the_grace_period(self):
        kube = FakeKube(self.objects(), terminating=False)
        stopped = datetime.datetime(2026, 12, 4, 12, 0, tzinfo=datetime.timezone.utc)
        times = iter([stopped] + [stopped + datetime.timedelta(seconds=s) for s in (1, 10, 31, 32)])
        with mock.patch.object(rollout, "now", side_effect=lambda: next(times)):
            code, out = run_quiesce(kube, {"tracking": "old", "auth": "new-a"})
        self.assertEqual(code, 0, out)
        # Grace 30 s plus the margin: the wait ends at the sample 32 s after the scale-down.
        self.assertRaises(StopIteration, next, times)

    def test_a_retry_after_a_failed_attempt_keeps_the_replica_count_it_recorded(self):
        marks = {rollout.REPLICAS_BEFORE: "3", rollout.STOPPED_AT: "2026-12-04T12:00:00+00:00"}
        kube = FakeKube(self.objects(replicas=0, annotations=marks))
        code, _ = run_quiesce(kube, {"tracking": "mid", "auth": "new-a"})
        self.assertEqual(code, 0)
        self.assertEqual(kube.objects["deployments/" + DEPLOYMENT]["metadata"]["annotations"][rollout.REPLICAS_BEFORE], "3")
        self.assertNotIn("deployments/" + DEPLOYMENT, [p for p, _ in kube.patches])

    def test_a_first_install_has_nothing_to_stop(self):
        kube = FakeKube({})
        code, out = run_quiesce(kube, {"tracking": None, "auth": None})
        self.assertEqual(code, 0, out)
        self.assertEqual(kube.patches, [])


class Resume(unittest.TestCase):
    def test_resumes_what_quiesce_held_and_removes_the_marks(self):
        marks = {rollout.REPLICAS_BEFORE: "3", rollout.STOPPED_AT: "x"}
        objects = {"deployments/" + DEPLOYMENT: deployment(replicas=3, annotations=marks),
                   "cronjobs/mlflow-gc": cronjob(True, {rollout.HELD: "true"}), "cronjobs/mlflow-db-backup": cronjob(True)}
        kube = FakeKube(objects)
        with redirect_stdout(io.StringIO()):
            self.assertEqual(rollout.resume(env=ENV, kube=kube, clock=Clock()), 0)
        self.assertFalse(objects["cronjobs/mlflow-gc"]["spec"]["suspend"])
        self.assertNotIn(rollout.HELD, objects["cronjobs/mlflow-gc"]["metadata"]["annotations"])
        # Suspended by someone else: left suspended.
        self.assertTrue(objects["cronjobs/mlflow-db-backup"]["spec"]["suspend"])
        self.assertEqual(objects["deployments/" + DEPLOYMENT]["metadata"]["annotations"], {})
        # Pulumi set the replicas again: resume does not touch them.
        self.assertEqual(objects["deployments/" + DEPLOYMENT]["spec"]["replicas"], 3)

    def test_scales_an_autoscaled_deployment_back_and_waits_for_a_pod(self):
        objects = {"deployments/" + DEPLOYMENT: deployment(replicas=0, annotations={rollout.REPLICAS_BEFORE: "2", rollout.STOPPED_AT: "x"})}
        kube = FakeKube(objects, lag=3)
        clock = Clock()
        with redirect_stdout(io.StringIO()) as out:
            self.assertEqual(rollout.resume(env=ENV, kube=kube, clock=clock), 0)
        self.assertEqual(objects["deployments/" + DEPLOYMENT]["spec"]["replicas"], 2)
        self.assertIn("scaled back to 2 replicas", out.getvalue())
        self.assertGreater(clock.t, 0)

    def test_fails_when_no_pod_comes_back(self):
        objects = {"deployments/" + DEPLOYMENT: deployment(replicas=0, annotations={rollout.REPLICAS_BEFORE: "2", rollout.STOPPED_AT: "x"})}
        kube = FakeKube(objects, lag=10 ** 6)
        with redirect_stdout(io.StringIO()) as out:
            self.assertEqual(rollout.resume(env=ENV, kube=kube, clock=Clock()), 1)
        self.assertIn("FAILED: no pod of mlflow-tracking-server became available within 60 s", out.getvalue())

    def test_nothing_held(self):
        kube = FakeKube({"deployments/" + DEPLOYMENT: deployment()})
        with redirect_stdout(io.StringIO()) as out:
            self.assertEqual(rollout.resume(env=ENV, kube=kube, clock=Clock()), 0)
        self.assertEqual(kube.patches, [])
        self.assertIn("nothing was held", out.getvalue())


class Api(unittest.TestCase):
    def test_ignores_proxy_settings(self):
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            for name, text in (("namespace", "mlflow"), ("token", "t")):
                with open(os.path.join(d, name), "w") as f:
                    f.write(text)
            with mock.patch.object(rollout.ssl, "create_default_context"), \
                    mock.patch.dict(os.environ, {"HTTPS_PROXY": "http://proxy.example:3128"}):
                kube = rollout.Kube(sa_dir=d, env={"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"})
            self.assertFalse(any(isinstance(h, rollout.urllib.request.ProxyHandler) and h.proxies for h in kube.opener.handlers))
            self.assertEqual(kube.namespace, "mlflow")
            self.assertEqual(kube.base, "https://10.96.0.1:443")


if __name__ == "__main__":
    unittest.main()
