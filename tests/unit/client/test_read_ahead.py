"""A stream reads its caller's source at most `max_in_flight` requests ahead of the answers and at
most `READ_AHEAD_BYTES` ahead of what it has sent: a server that stops taking requests (its own
window full) stops the reading, so a folder of large items is not read into memory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from onespace_client import _streams
from onespace_client.v1 import common_pb2, data_pb2


class HeldCall:
    """A bidi call whose writes wait until `flowing` is set (a server not reading), and which
    answers each request it took with its request id."""

    def __init__(self) -> None:
        self.flowing = asyncio.Event()
        self.writing = asyncio.Event()
        self.taken: list[str] = []
        self._answers: asyncio.Queue[str | None] = asyncio.Queue()

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        pass

    async def write(self, request: data_pb2.IngestRequest) -> None:
        self.writing.set()
        await self.flowing.wait()
        self.taken.append(request.request_id)
        self._answers.put_nowait(request.request_id)

    async def done_writing(self) -> None:
        self._answers.put_nowait(None)

    def cancel(self) -> bool:
        return False

    def __aiter__(self) -> AsyncIterator[str]:
        return self._answer()

    async def _answer(self) -> AsyncIterator[str]:
        while (answer := await self._answers.get()) is not None:
            yield answer


async def test_reading_stops_while_the_unsent_requests_hold_the_read_ahead_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_streams, "READ_AHEAD_BYTES", 1000)
    requests = [
        data_pb2.IngestRequest(
            request_id=str(n), item=data_pb2.Item(id=f"d{n}", content=common_pb2.Content(text="x" * 290))
        )
        for n in range(10)
    ]
    assert all(300 <= r.ByteSize() < 334 for r in requests)  # three fit in 1000 bytes, four do not
    read = 0
    more = asyncio.Event()

    async def source() -> AsyncIterator[data_pb2.IngestRequest]:
        nonlocal read
        for request in requests:
            read += 1
            more.set()
            yield request

    call = HeldCall()
    answers: list[str] = []

    async def consume() -> None:
        async for answer in _streams.bounded_bidi(call, source(), 100):  # type: ignore[arg-type]
            answers.append(answer)

    consumer = asyncio.ensure_future(consume())
    await call.writing.wait()
    while read < 4:
        await more.wait()
        more.clear()
    for _ in range(10):
        await asyncio.sleep(0)  # the reader would read on if it could
    # one being written and two waiting hold 900 bytes: the fourth was read and waits for room
    assert read == 4 and not call.taken
    call.flowing.set()
    await consumer
    assert call.taken == answers == [str(n) for n in range(10)]
