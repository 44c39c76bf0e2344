"""Request bounds for the MLflow tracking server: an ASGI layer in front of MLflow's own app.

Loaded as the ``mlflow.app`` plugin ``bounded-basic-auth`` (``mlflow server --app-name
bounded-basic-auth``): each uvicorn worker builds MLflow's basic-auth app and wraps it here, so every
request passes these checks before MLflow or its login check reads a byte of the body:

- a body larger than its route's limit is refused with 413 from its ``Content-Length`` alone, or, sent
  chunked, as soon as it passes the limit (the API's bodies: ``REQUEST_BOUNDS_MAX_BODY_BYTES``;
  proxied artifact uploads, which MLflow streams to disk: ``REQUEST_BOUNDS_MAX_UPLOAD_BYTES``);
- bodies above ``SMALL_BODY_BYTES`` share a per-worker budget (``REQUEST_BOUNDS_BODY_BUDGET_BYTES``):
  MLflow buffers and parses an API body whole, at about 15 times its size, so a worker admits large
  bodies only while their sum fits, and answers 503 (retried by MLflow's client) otherwise;
- at most ``REQUEST_BOUNDS_MAX_CONCURRENT`` requests per worker (503 beyond, ``/health`` exempt);
- an API body must arrive within ``REQUEST_BOUNDS_BODY_TIMEOUT_SECONDS``, and an upload must not pause
  for longer (408 otherwise).

Every refusal is MLflow's JSON error shape (``{"error_code": ..., "message": ...}``) with a code
MLflow's client maps, and names the setting to raise. It also turns an unhandled error below it
(Flask's HTML page when PostgreSQL goes away mid-request) into MLflow's JSON 503.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from dataclasses import dataclass

_logger = logging.getLogger("mlflow_k8s.request_bounds")

#: Bodies up to this size are not counted against the budget: their cost is part of the
#: per-worker peak measured with many concurrent clients (components/sizing.ts).
SMALL_BODY_BYTES = 64 * 1024

_UPLOAD_PATH = re.compile(r"^/(?:ajax-)?api/2\.0/mlflow-artifacts/artifacts/")


@dataclass(frozen=True)
class Limits:
    """The bounds of one worker, and the stack config key each one comes from (named in refusals)."""

    max_body_bytes: int
    max_upload_bytes: int
    body_budget_bytes: int
    max_concurrent: int
    body_timeout_seconds: float
    static_prefix: str = ""

    @staticmethod
    def from_env(env: dict[str, str] | os._Environ = os.environ) -> "Limits":
        def number(name: str, kind=int):
            raw = env.get(name)
            if raw is None or raw.strip() == "":
                raise RuntimeError(f"{name} is not set: the request bounds need it")
            try:
                value = kind(raw)
            except ValueError:
                raise RuntimeError(f"{name}={raw!r} is not a number") from None
            if value <= 0:
                raise RuntimeError(f"{name}={raw!r} must be positive")
            return value

        limits = Limits(
            max_body_bytes=number("REQUEST_BOUNDS_MAX_BODY_BYTES"),
            max_upload_bytes=number("REQUEST_BOUNDS_MAX_UPLOAD_BYTES"),
            body_budget_bytes=number("REQUEST_BOUNDS_BODY_BUDGET_BYTES"),
            max_concurrent=number("REQUEST_BOUNDS_MAX_CONCURRENT"),
            body_timeout_seconds=number("REQUEST_BOUNDS_BODY_TIMEOUT_SECONDS", float),
            static_prefix=env.get("_MLFLOW_STATIC_PREFIX", "") or "",
        )
        if limits.body_budget_bytes < limits.max_body_bytes:
            raise RuntimeError("REQUEST_BOUNDS_BODY_BUDGET_BYTES must hold at least one body of REQUEST_BOUNDS_MAX_BODY_BYTES")
        return limits


# The stack config keys behind the settings, so that a refusal tells the operator what to raise.
KEYS = {
    "body": "stack config mlflowMaxRequestBodySize",
    "upload": "stack config mlflowMaxUploadSize",
    "budget": "stack config mlflowRequestBodyBudget",
    "concurrent": "stack config mlflowMaxConcurrentRequests",
    "timeout": "stack config mlflowRequestBodyTimeoutSeconds",
}


def scoring_keys(model: str) -> dict[str, str]:
    """What a served model's refusals name: its own entry of the stack's servedModels."""
    entry = f"stack config servedModels ({model})"
    return {
        "body": f"{entry}.maxRequestBodySize",
        "upload": f"{entry}.maxRequestBodySize",
        "budget": f"{entry}.maxRequestBodySize, which the budget of large bodies is twice",
        "concurrent": f"{entry}.workers or maxReplicas: each worker serves a fixed number at once",
        "timeout": "the model server's fixed body timeout",
    }


def _mib(n: int) -> str:
    return f"{n / 2**20:.4g} MiB"


def error_body(code: str, message: str) -> bytes:
    """MLflow's error shape, as its handlers answer an MlflowException."""
    return json.dumps({"error_code": code, "message": message}).encode()


class Refusal(Exception):
    """A bound broken: the answer the layer gives instead of the app's."""

    def __init__(self, status: int, code: str, message: str, retry: bool = False):
        super().__init__(message)
        self.status, self.code, self.message, self.retry = status, code, message, retry


#: How long a refused body's bytes already on their way are read and discarded (as nginx's lingering
#: close does), so that the client reads the answer instead of a reset connection.
DRAIN_SECONDS = 2.0


async def answer(send, refusal: Refusal, receive=None) -> None:
    """Sends a refusal in MLflow's error shape; with ``receive``, discards the unread body first."""
    body = error_body(refusal.code, refusal.message)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        # The rest of the body is never read: the connection cannot carry another request.
        (b"connection", b"close"),
    ]
    if refusal.retry:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    if receive is None:
        await send({"type": "http.response.body", "body": body})
        return
    # The answer first, its end after the drain: the client has it while it is still sending.
    await send({"type": "http.response.body", "body": body, "more_body": True})
    loop = asyncio.get_running_loop()
    until = loop.time() + DRAIN_SECONDS
    try:
        while (remaining := until - loop.time()) > 0:
            message = await asyncio.wait_for(receive(), remaining)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
    except Exception:  # noqa: BLE001 - a timeout or a gone client: the connection is closed after this
        pass
    await send({"type": "http.response.body", "body": b""})


class RequestBounds:
    """ASGI middleware bounding each request's body, the worker's large bodies and its concurrency."""

    def __init__(self, app, limits: Limits, keys: dict[str, str] = KEYS, health: tuple[str, ...] = ("/health",)):
        self.app = app
        self.limits = limits
        self.keys = keys
        self.in_flight = 0
        self.budget_used = 0
        self.health = {f"{limits.static_prefix}{h}" for h in health}

    def route(self, scope) -> tuple[str, int]:
        """The route class of a request (``upload`` or ``body``) and its body limit."""
        path = scope.get("path", "")
        prefix = self.limits.static_prefix
        if prefix and path.startswith(prefix):
            path = path[len(prefix):]
        if scope.get("method") == "PUT" and _UPLOAD_PATH.match(path):
            return "upload", self.limits.max_upload_bytes
        return "body", self.limits.max_body_bytes

    def too_large(self, route: str, limit: int, size: str) -> Refusal:
        what = "an artifact upload through the server" if route == "upload" else "an API request body"
        hint = (
            "; larger files go to S3 directly with presigned multipart uploads"
            if route == "upload"
            else " (MLflow's own limits per log_batch: 1000 metrics, params and tags, at most 100 params and 100 tags); split the request"
        )
        return Refusal(
            413, "RESOURCE_EXHAUSTED",
            f"Request body of {size} exceeds the {_mib(limit)} allowed for {what}{hint}, or raise the "
            f"server's limit ({self.keys[route]}).",
        )

    def admit(self, scope) -> tuple[Refusal | None, str, int, int, bool]:
        """Checks the headers: a refusal or None, the route class, its limit, the budget to reserve,
        and whether a refused body may be drained."""
        route, limit = self.route(scope)
        headers = scope.get("headers", [])
        lengths = [v for k, v in headers if k == b"content-length"]
        # HTTP/1.1: without a Content-Length, only a chunked request has a body.
        chunked = any(k == b"transfer-encoding" and b"chunked" in v.lower() for k, v in headers)
        declared = None if chunked or lengths else 0
        if lengths:
            try:
                values = {int(v) for v in lengths}
            except ValueError:
                values = set()
            if len(values) != 1 or min(values) < 0:
                return Refusal(400, "INVALID_PARAMETER_VALUE", "Invalid Content-Length header."), route, limit, 0, False
            declared = values.pop()
        if declared is not None and declared > limit:
            return self.too_large(route, limit, _mib(declared)), route, limit, 0, True
        if self.in_flight >= self.limits.max_concurrent:
            return Refusal(
                503, "TEMPORARILY_UNAVAILABLE",
                f"This server worker is serving {self.in_flight} requests, its limit "
                f"({self.keys['concurrent']}); retry shortly.", retry=True,
            ), route, limit, 0, True
        # Large API bodies are buffered and parsed whole: they reserve their size in the budget. A
        # chunked body reserves the most it may grow to. Uploads stream to disk and reserve nothing.
        reserve = 0
        if route == "body":
            expected = limit if declared is None else declared
            reserve = expected if expected > SMALL_BODY_BYTES else 0
        if reserve and self.budget_used + reserve > self.limits.body_budget_bytes:
            return Refusal(
                503, "TEMPORARILY_UNAVAILABLE",
                f"This server worker is already reading {_mib(self.budget_used)} of large request bodies, "
                f"its budget ({self.keys['budget']}); retry shortly.", retry=True,
            ), route, limit, 0, True
        return None, route, limit, reserve, False

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") in self.health:
            return await self.app(scope, receive, send)
        refusal, route, limit, reserve, drain = self.admit(scope)
        if refusal is not None:
            return await answer(send, refusal, receive if drain else None)
        self.in_flight += 1
        self.budget_used += reserve
        try:
            await self.serve(scope, receive, send, route, limit)
        finally:
            self.in_flight -= 1
            self.budget_used -= reserve

    async def serve(self, scope, receive, send, route: str, limit: int) -> None:
        loop = asyncio.get_running_loop()
        timeout = self.limits.body_timeout_seconds
        deadline = loop.time() + timeout
        received = 0
        body_done = False
        started = False
        refused: Refusal | None = None
        # Flask's HTML page for an unhandled error (PostgreSQL gone mid-request): replaced below.
        html_error = False

        async def bounded_receive():
            nonlocal received, body_done, refused, deadline
            if body_done or refused is not None:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                refused = Refusal(
                    408, "DEADLINE_EXCEEDED",
                    f"The request body did not arrive within {timeout:g} s{' of its last bytes' if route == 'upload' else ''} "
                    f"({self.keys['timeout']}); "
                    "send it faster or in smaller requests.", retry=True,
                )
                raise refused from None
            if message["type"] == "http.request":
                if route == "upload":
                    # An upload may take long; it must not pause for longer than the timeout.
                    deadline = loop.time() + timeout
                received += len(message.get("body", b""))
                if received > limit:
                    refused = self.too_large(route, limit, f"more than {_mib(limit)}")
                    raise refused
                if not message.get("more_body", False):
                    body_done = True
            return message

        async def tracked_send(message):
            nonlocal started, html_error
            if refused is not None or html_error:
                return
            if message["type"] == "http.response.start":
                content_type = dict(message.get("headers", [])).get(b"content-type", b"")
                if message["status"] == 500 and not content_type.startswith(b"application/json"):
                    html_error = True
                    return
                started = True
            await send(message)

        failure: Exception | None = None
        try:
            await self.app(scope, bounded_receive, tracked_send)
        except Exception as e:  # noqa: BLE001 - the layer answers whatever broke below it
            if started:
                raise
            failure = e
        if started:
            return
        if refused is not None:
            await answer(send, refused, receive if refused.status == 413 else None)
        elif failure is not None or html_error:
            if failure is not None and not isinstance(failure, Refusal):
                _logger.error("unhandled error serving %s %s: %r", scope.get("method"), scope.get("path"), failure)
            await answer(send, Refusal(
                500, "INTERNAL_ERROR",
                "The server could not complete the request (its database or artifact store may be "
                "unavailable); retry shortly.", retry=True,
            ))


def create_app():
    """The ``mlflow.app`` factory: MLflow's basic-auth app, bounded."""
    limits = Limits.from_env()
    from mlflow.server.auth import create_app as basic_auth_app

    app = basic_auth_app()
    _logger.info(
        "request bounds: API bodies %s, uploads %s, large-body budget %s, %d concurrent requests, body timeout %g s",
        _mib(limits.max_body_bytes), _mib(limits.max_upload_bytes), _mib(limits.body_budget_bytes),
        limits.max_concurrent, limits.body_timeout_seconds,
    )
    return RequestBounds(app, limits)


def create_scoring_app():
    """A served model's factory (``uvicorn --factory request_bounds:create_scoring_app``): MLflow's
    scoring app (which loads the model from ``__pyfunc_model_path__``), bounded; ``/ping`` and
    ``/health`` are its probes."""
    limits = Limits.from_env()
    from mlflow.pyfunc.scoring_server.app import app

    _logger.info(
        "request bounds: bodies %s, large-body budget %s, %d concurrent requests, body timeout %g s",
        _mib(limits.max_body_bytes), _mib(limits.body_budget_bytes), limits.max_concurrent, limits.body_timeout_seconds,
    )
    return RequestBounds(app, limits, scoring_keys(os.environ.get("REQUEST_BOUNDS_MODEL_NAME", "this model")), ("/ping", "/health"))
