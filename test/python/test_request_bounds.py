"""Unit tests of components/request-bounds/request_bounds.py, run by test/integration/requestBounds.spec.ts
with the MLflow venv's Python (`python -m unittest`)."""

import asyncio
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "components", "request-bounds"))
import request_bounds as rb  # noqa: E402

LIMITS = rb.Limits(max_body_bytes=1000, max_upload_bytes=5000, body_budget_bytes=1000, max_concurrent=2, body_timeout_seconds=0.2)


def scope(method="POST", path="/api/2.0/mlflow/runs/log-batch", length=None):
    headers = [(b"transfer-encoding", b"chunked")] if length is None else [(b"content-length", str(length).encode())]
    return {"type": "http", "method": method, "path": path, "headers": headers}


class Client:
    """Feeds body chunks (None: stall) and records what the layer or app sends."""

    def __init__(self, chunks):
        self.chunks = list(chunks)
        self.read = 0
        self.sent = []

    async def receive(self):
        if not self.chunks:
            await asyncio.sleep(10)
            return {"type": "http.disconnect"}
        chunk = self.chunks.pop(0)
        if chunk is None:
            await asyncio.sleep(10)
        self.read += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks)}

    async def send(self, message):
        self.sent.append(message)

    @property
    def status(self):
        return next(m["status"] for m in self.sent if m["type"] == "http.response.start")

    @property
    def json(self):
        return json.loads(b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body"))


async def reading_app(scope, receive, send):
    """Reads the whole body, as MLflow's WSGI bridge does, then answers 200."""
    while True:
        m = await receive()
        if not m.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def run(coro):
    return asyncio.run(coro)


class RequestBoundsTest(unittest.TestCase):
    def test_declared_body_over_the_limit_is_refused_before_the_app_reads_it(self):
        called = []

        async def app(*a):
            called.append(1)

        c = Client([b"x" * 600, b"x" * 600])
        run(rb.RequestBounds(app, LIMITS)(scope(length=1200), c.receive, c.send))
        self.assertEqual((c.status, c.json["error_code"]), (413, "RESOURCE_EXHAUSTED"))
        self.assertIn("mlflowMaxRequestBodySize", c.json["message"])
        self.assertEqual(called, [])

    def test_a_body_within_the_limit_reaches_the_app(self):
        c = Client([b"x" * 500, b"x" * 500])
        run(rb.RequestBounds(reading_app, LIMITS)(scope(length=1000), c.receive, c.send))
        self.assertEqual(c.status, 200)

    def test_a_chunked_body_is_cut_off_once_past_the_limit(self):
        c = Client([b"x" * 600, b"x" * 600, b"x" * 600])
        run(rb.RequestBounds(reading_app, LIMITS)(scope(), c.receive, c.send))
        self.assertEqual(c.status, 413)

    def test_uploads_have_their_own_limit_under_the_static_prefix(self):
        limits = rb.Limits(**{**LIMITS.__dict__, "static_prefix": "/mlflow"})
        ok = Client([b"x" * 4000])
        run(rb.RequestBounds(reading_app, limits)(scope("PUT", "/mlflow/api/2.0/mlflow-artifacts/artifacts/1/a.bin", 4000), ok.receive, ok.send))
        self.assertEqual(ok.status, 200)
        over = Client([])
        run(rb.RequestBounds(reading_app, limits)(scope("PUT", "/mlflow/api/2.0/mlflow-artifacts/artifacts/1/a.bin", 6000), over.receive, over.send))
        self.assertEqual(over.status, 413)
        self.assertIn("mlflowMaxUploadSize", over.json["message"])

    def test_large_bodies_beyond_the_budget_and_requests_beyond_the_limit_get_503(self):
        async def scenario():
            gate = asyncio.Event()

            async def slow_app(scope, receive, send):
                await receive()
                await gate.wait()
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": b"{}"})

            bounds = rb.RequestBounds(slow_app, LIMITS)
            first = Client([b"x" * 900])
            # Bodies of 900 bytes count as large once the threshold is below them.
            rb.SMALL_BODY_BYTES, saved = 100, rb.SMALL_BODY_BYTES
            try:
                task = asyncio.create_task(bounds(scope(length=900), first.receive, first.send))
                await asyncio.sleep(0.01)
                second = Client([b"x" * 900])
                await bounds(scope(length=900), second.receive, second.send)
                small = Client([b"x" * 50])
                small_task = asyncio.create_task(bounds(scope(length=50), small.receive, small.send))
                await asyncio.sleep(0.01)
                third = Client([b"x"])
                await bounds(scope(length=1), third.receive, third.send)
                gate.set()
                await task
                await small_task
            finally:
                rb.SMALL_BODY_BYTES = saved
            return first, second, small, third, bounds

        first, second, small, third, bounds = run(scenario())
        self.assertEqual((first.status, small.status), (200, 200))
        self.assertEqual((second.status, second.json["error_code"]), (503, "TEMPORARILY_UNAVAILABLE"))
        self.assertIn("mlflowRequestBodyBudget", second.json["message"])
        self.assertEqual(third.status, 503)
        self.assertIn("mlflowMaxConcurrentRequests", third.json["message"])
        self.assertEqual((bounds.in_flight, bounds.budget_used), (0, 0))

    def test_a_slow_body_gets_408(self):
        c = Client([b"x" * 10, None])
        run(rb.RequestBounds(reading_app, LIMITS)(scope(length=100), c.receive, c.send))
        self.assertEqual((c.status, c.json["error_code"]), (408, "DEADLINE_EXCEEDED"))
        self.assertIn("mlflowRequestBodyTimeoutSeconds", c.json["message"])

    def test_an_html_500_becomes_mlflow_json(self):
        async def failing(scope, receive, send):
            await send({"type": "http.response.start", "status": 500, "headers": [(b"content-type", b"text/html")]})
            await send({"type": "http.response.body", "body": b"<html>Internal Server Error</html>"})

        c = Client([])
        run(rb.RequestBounds(failing, LIMITS)(scope("GET", "/api/2.0/mlflow/experiments/search", None), c.receive, c.send))
        self.assertEqual((c.status, c.json["error_code"]), (500, "INTERNAL_ERROR"))

    def test_requests_without_a_body_reserve_nothing(self):
        async def scenario():
            gate = asyncio.Event()

            async def waiting_app(scope, receive, send):
                await gate.wait()
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": b"{}"})

            bounds = rb.RequestBounds(waiting_app, LIMITS)
            get = {"type": "http", "method": "GET", "path": "/api/2.0/mlflow/experiments/search", "headers": []}
            first, second = Client([]), Client([])
            task = asyncio.create_task(bounds(get, first.receive, first.send))
            await asyncio.sleep(0.01)
            used = bounds.budget_used
            gate.set()
            await asyncio.gather(task, bounds(get, second.receive, second.send))
            return used, first, second

        # A limit above the small-body threshold, as the rendered 2 MiB is above 64 KiB.
        rb.SMALL_BODY_BYTES, saved = 100, rb.SMALL_BODY_BYTES
        try:
            used, first, second = run(scenario())
        finally:
            rb.SMALL_BODY_BYTES = saved
        self.assertEqual((used, first.status, second.status), (0, 200, 200))

    def test_health_is_never_refused(self):
        bounds = rb.RequestBounds(reading_app, LIMITS)
        bounds.in_flight = LIMITS.max_concurrent
        c = Client([b""])
        run(bounds({"type": "http", "method": "GET", "path": "/health", "headers": []}, c.receive, c.send))
        self.assertEqual(c.status, 200)

    def test_a_served_model_names_its_own_entry_and_its_probes_are_exempt(self):
        bounds = rb.RequestBounds(reading_app, LIMITS, rb.scoring_keys("iris"), ("/ping", "/health"))
        c = Client([])
        run(bounds(scope("POST", "/invocations", 5000), c.receive, c.send))
        self.assertEqual(c.status, 413)
        self.assertIn("servedModels (iris).maxRequestBodySize", c.json["message"])
        bounds.in_flight = LIMITS.max_concurrent
        ping = Client([b""])
        run(bounds({"type": "http", "method": "GET", "path": "/ping", "headers": []}, ping.receive, ping.send))
        self.assertEqual(ping.status, 200)

    def test_settings_are_required_and_consistent(self):
        env = {"REQUEST_BOUNDS_MAX_BODY_BYTES": "1000", "REQUEST_BOUNDS_MAX_UPLOAD_BYTES": "5000", "REQUEST_BOUNDS_BODY_BUDGET_BYTES": "1000",
               "REQUEST_BOUNDS_MAX_CONCURRENT": "2", "REQUEST_BOUNDS_BODY_TIMEOUT_SECONDS": "30"}
        self.assertEqual(rb.Limits.from_env(env).max_body_bytes, 1000)
        for broken in ({"REQUEST_BOUNDS_MAX_CONCURRENT": ""}, {"REQUEST_BOUNDS_MAX_BODY_BYTES": "ten"}, {"REQUEST_BOUNDS_BODY_BUDGET_BYTES": "999"}):
            with self.assertRaises(RuntimeError):
                rb.Limits.from_env({**env, **broken})


if __name__ == "__main__":
    unittest.main()
