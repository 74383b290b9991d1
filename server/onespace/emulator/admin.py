"""The admin API: read counters, change latency/quota/faults at runtime, force errors, reset,
and put objects into the emulated S3. Not part of Bedrock; everything lives under `/_emulator/`.

    GET  /_emulator/stats              counters per model and outcome, batch sizes, max in flight
    GET  /_emulator/config             the current config
    POST /_emulator/config             a partial config (see EmulatorConfig.updated), plus optional
                                       "force_error": {"code", "count", "message", "model"} (or a list)
    POST /_emulator/reset              zero counters, refill quotas, drop forced errors and S3 objects
    GET  /_emulator/models             the model ids served
    PUT  /_emulator/s3/{bucket}/{key}  store the request body as s3://bucket/key
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from onespace.emulator.catalog import CATALOG
from onespace.emulator.errors import ERROR_STATUS
from onespace.emulator.keys import STATE

__all__ = ["add_admin_routes"]

_FORCE_KEYS = {"code", "count", "message", "model"}


def add_admin_routes(app: web.Application) -> None:
    app.router.add_get("/_emulator/stats", _stats)
    app.router.add_get("/_emulator/config", _get_config)
    app.router.add_post("/_emulator/config", _post_config)
    app.router.add_post("/_emulator/reset", _reset)
    app.router.add_get("/_emulator/models", _models)
    app.router.add_put(r"/_emulator/s3/{bucket}/{key:.+}", _put_object)


def _bad(message: str) -> web.Response:
    return web.json_response({"message": message}, status=400)


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].stats.to_json())


async def _get_config(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].config.to_json())


async def _post_config(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        patch = json.loads(await request.read() or b"{}")
        if not isinstance(patch, dict):
            raise ValueError("the body must be a JSON object")
        forced = patch.pop("force_error", None)
        requests = [] if forced is None else forced if isinstance(forced, list) else [forced]
        parsed = [_force_args(f) for f in requests]
        config = state.config.updated(patch)
        for args in parsed:
            state.force(**args)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        return _bad(str(exc))
    state.reconfigure(config)
    return web.json_response(config.to_json())


def _force_args(spec: object) -> dict[str, Any]:
    if not isinstance(spec, Mapping) or not set(spec) <= _FORCE_KEYS or "code" not in spec:
        raise ValueError(f"force_error: expected {{code, count?, message?, model?}}, got {spec!r}")
    if spec["code"] not in ERROR_STATUS:
        raise ValueError(
            f"force_error.code: {spec['code']!r} is not one of {', '.join(sorted(ERROR_STATUS))}"
        )
    count = spec.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"force_error.count: expected a positive integer, got {count!r}")
    return {
        "code": str(spec["code"]),
        "count": count,
        "message": spec.get("message"),
        "model": spec.get("model"),
    }


async def _reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return web.json_response({"reset": True})


async def _models(request: web.Request) -> web.Response:
    return web.json_response({"models": list(CATALOG)})


async def _put_object(request: web.Request) -> web.Response:
    bucket, key = request.match_info["bucket"], request.match_info["key"]
    data = await request.read()
    request.app[STATE].s3.put(bucket, key, data)
    return web.json_response({"uri": f"s3://{bucket}/{key}", "size": len(data)})
