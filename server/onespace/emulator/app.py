"""The aiohttp application speaking Bedrock Runtime `InvokeModel`, and a helper to run it.

`POST /model/{modelId}/invoke` answers like the service: 200 with the model's JSON body, or the
error's HTTP status with `x-amzn-ErrorType` and `{"message": ...}`; always `x-amzn-RequestId`
and `x-amzn-bedrock-invocation-latency`. Vectors come from the local featurizer, computed in a
worker thread, so the emulator and the local provider agree on every input.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import unquote

from aiohttp import web

from onespace.emulator import cohere, nova, titan
from onespace.emulator.admin import add_admin_routes
from onespace.emulator.catalog import CatalogEntry, Family, resolve_model
from onespace.emulator.config import EmulatorConfig
from onespace.emulator.errors import EmulatedError
from onespace.emulator.invocation import Invocation, S3Store
from onespace.emulator.keys import STATE
from onespace.emulator.state import EmulatorState
from onespace.emulator.stats import UNRESOLVED
from onespace.emulator.vectors import embed_all

__all__ = ["MAX_BODY_BYTES", "RunningEmulator", "build_app", "running_emulator"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 25_000_000  # the service model's cap on the InvokeModel body
_PREFIX, _SUFFIX = "/model/", "/invoke"

_Prepare = Callable[[object, CatalogEntry, S3Store], Invocation]
_FAMILIES: dict[Family, _Prepare] = {
    Family.NOVA: nova.prepare,
    Family.TITAN_MULTIMODAL: titan.prepare,
    Family.TITAN_TEXT_V2: titan.prepare,
    Family.TITAN_TEXT_G1: titan.prepare,
    Family.COHERE_V3: cohere.prepare,
    Family.COHERE_V4: cohere.prepare,
}


def build_app(config: EmulatorConfig | None = None) -> web.Application:
    """The emulator as an aiohttp application (state in `app[STATE]`)."""
    app = web.Application(client_max_size=MAX_BODY_BYTES + 8 * 1024 * 1024)
    app[STATE] = EmulatorState(config or EmulatorConfig())
    app.router.add_post(r"/model/{model_id:.+}/invoke", _invoke)
    add_admin_routes(app)
    return app


def _model_id(request: web.Request) -> str:
    """The id from the raw path: aiohttp would decode `%2F` in ARNs before routing."""
    raw = request.raw_path.split("?", 1)[0]
    return unquote(raw[len(_PREFIX) : -len(_SUFFIX)])


async def _invoke(request: web.Request) -> web.Response:
    state = request.app[STATE]
    started = time.monotonic()
    request_id = str(uuid.uuid4())
    model = UNRESOLVED
    try:
        entry = resolve_model(_model_id(request))
        model = entry.id
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            raise EmulatedError(
                "ValidationException", f"The request body exceeds {MAX_BODY_BYTES} bytes."
            ) from exc
        state.check_forced(model, raw)
        state.check_quota(model)
        async with state.slot():
            body, invocation = await _call(state, entry, raw, started)
    except EmulatedError as exc:
        state.stats.record(model, exc.code, request_id)
        return _error(exc, model, request_id, started)
    except Exception as exc:  # an emulator bug: still answer in Bedrock's shape, never a bare 500
        log.exception("emulator failure on %s", model)
        internal = EmulatedError("InternalServerException", f"Emulator failure: {type(exc).__name__}: {exc}")
        state.stats.record(model, internal.code, request_id)
        return _error(internal, model, request_id, started)
    state.stats.record(model, "ok", request_id, invocation.batch_size)
    headers = {"Content-Type": "application/json", **_common(request_id, started), **invocation.headers}
    if invocation.input_token_count is not None:
        headers["x-amzn-bedrock-input-token-count"] = str(invocation.input_token_count)
    return web.Response(body=body, status=200, headers=headers)


async def _call(
    state: EmulatorState, entry: CatalogEntry, raw: bytes, started: float
) -> tuple[bytes, Invocation]:
    fault = state.draw_fault()
    if fault is not None and fault != "ModelTimeoutException":
        raise EmulatedError(fault)
    if len(raw) > MAX_BODY_BYTES:
        raise EmulatedError("ValidationException", f"The request body exceeds {MAX_BODY_BYTES} bytes.")
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EmulatedError(
            "ValidationException", f"Malformed input request: the body is not valid JSON ({exc})."
        ) from exc
    invocation = _FAMILIES[entry.family](payload, entry, state.s3)
    delay = state.latency_seconds(invocation.modality.value, invocation.batch_size)
    body = await asyncio.to_thread(_compute, invocation, entry)
    remaining = started + delay - time.monotonic()
    if remaining > 0:
        await asyncio.sleep(remaining)
    if fault is not None:
        raise EmulatedError(fault)
    return body, invocation


def _compute(invocation: Invocation, entry: CatalogEntry) -> bytes:
    results = embed_all(invocation.contents, invocation.dimension, entry.spec)
    return json.dumps(invocation.respond(results), separators=(",", ":")).encode()


def _common(request_id: str, started: float) -> dict[str, str]:
    elapsed_ms = int((time.monotonic() - started) * 1000)
    return {"x-amzn-RequestId": request_id, "x-amzn-bedrock-invocation-latency": str(elapsed_ms)}


def _error(exc: EmulatedError, model: str, request_id: str, started: float) -> web.Response:
    headers = {
        "Content-Type": "application/json",
        "x-amzn-ErrorType": exc.code,
        **_common(request_id, started),
    }
    return web.Response(body=json.dumps(exc.body(model)).encode(), status=exc.status, headers=headers)


@dataclass(frozen=True, slots=True)
class RunningEmulator:
    """A started emulator: point a client's `endpoint_url` at `url`; `state` is live."""

    url: str
    app: web.Application

    @property
    def state(self) -> EmulatorState:
        return self.app[STATE]


@asynccontextmanager
async def running_emulator(
    config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[RunningEmulator]:
    """Serve the emulator on `host:port` (0: a free port) for the duration of the block."""
    app = build_app(config)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield RunningEmulator(f"http://{bound_host}:{bound_port}", app)
    finally:
        await runner.cleanup()
