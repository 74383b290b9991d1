"""The access log: one line per RPC with its status, duration and request id, in JSON if asked."""

from __future__ import annotations

import io
import json
from pathlib import Path

import grpc
import pytest

from onespace.auth.tokens import hash_token
from onespace_client.v1 import info_pb2
from tests.harness import running_gateway


def lines(stream: io.StringIO) -> list[dict[str, str]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_every_rpc_is_logged_with_its_request_id(tmp_path: Path, json_log: io.StringIO) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(f'[[tokens]]\nsha256 = "{hash_token("t0k")}"\ntenant = "acme"\nrole = "reader"\n')
    async with running_gateway(tmp_path / "data", access_log_sample=1.0, auth_tokens=str(tokens)) as g:
        call = g.info.Info(
            info_pb2.InfoRequest(), metadata=(("x-request-id", "req-42"), ("authorization", "Bearer t0k"))
        )
        await call
        assert ("x-request-id", "req-42") in tuple(await call.initial_metadata())
        with pytest.raises(grpc.aio.AioRpcError):
            await g.info.Info(info_pb2.InfoRequest(), metadata=(("x-request-id", "bad id with spaces"),))
    first, second = lines(json_log)
    assert (
        first["request_id"] == "req-42" and first["level"] == "INFO" and first["logger"] == "onespace.access"
    )
    assert first["message"].startswith("Info OK ") and "tenant=acme" in first["message"]
    assert second["message"].startswith("Info UNAUTHENTICATED ") and "tenant=- " in second["message"]
    assert second["request_id"] not in ("", "bad id with spaces") and len(second["request_id"]) == 16
    assert "t0k" not in json_log.getvalue()


async def test_no_interceptor_when_nothing_would_be_logged(tmp_path: Path, json_log: io.StringIO) -> None:
    async with running_gateway(tmp_path) as g:
        call = g.info.Info(info_pb2.InfoRequest())
        await call
        assert "x-request-id" not in dict(tuple(await call.initial_metadata()))
    assert lines(json_log) == []
