"""SIGHUP re-reads the token file of a running `onespace serve`, without a restart."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import grpc

from onespace.auth.tokens import hash_token
from onespace_client.v1 import info_pb2, info_pb2_grpc
from tests.reliability.serve import Server


def _entry(token: str) -> str:
    return f'[[tokens]]\nsha256 = "{hash_token(token)}"\ntenant = "acme"\nrole = "reader"\n'


def _wait_for_line(server: Server, text: str, timeout: float = 30) -> None:
    """Until the server prints `text` (its output is read by a thread into `server.lines`)."""
    seen = threading.Event()
    end = time.monotonic() + timeout
    while not seen.is_set() and time.monotonic() < end:
        if any(text in line for line in server.lines):
            seen.set()
        else:
            seen.wait(0.05)
    assert seen.is_set(), f"the server never printed {text!r}:\n{server.output}"


async def test_sighup_reloads_the_token_file(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(_entry("old-token"))
    server = Server(tmp_path / "data", "--auth-tokens", str(tokens))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            info = info_pb2_grpc.InfoServiceStub(channel)
            await info.Info(info_pb2.InfoRequest(), metadata=(("authorization", "Bearer old-token"),))
            tokens.write_text(_entry("new-token"))
            server.proc.send_signal(signal.SIGHUP)
            _wait_for_line(server, "SIGHUP: reloading credentials")
            _wait_for_line(server, "token file reloaded")
            await info.Info(info_pb2.InfoRequest(), metadata=(("authorization", "Bearer new-token"),))
            try:
                await info.Info(info_pb2.InfoRequest(), metadata=(("authorization", "Bearer old-token"),))
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
            else:
                raise AssertionError("the old token still works after the reload")
    finally:
        assert server.terminate() == 0
