"""What every servicer holds, and the request checks and stream plumbing they share."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

import grpc

from onespace.errors import InvalidArgument, OnespaceError
from onespace.gateway import Gateway
from onespace.rpc.guard import RpcAdmission, deadline_of
from onespace.rpc.handlers import Undecodable
from onespace.rpc.status import bounded_details, status_for
from onespace.rpc.streaming import STOPS_HERE, BadFrame, bounded_group_batches, flattened, singletons
from onespace_client.v1 import common_pb2

__all__ = ["MAX_ANSWERS_PER_FRAME", "GroupAnswers", "Grouped", "Packed", "ServicerBase"]

# Answers per response frame of a packed stream: 64 answers of the largest vectors (3072 floats)
# stay near 1 MiB, well under any client's 4 MiB default receive limit.
MAX_ANSWERS_PER_FRAME = 64

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Req_co = TypeVar("Req_co", covariant=True)
Result = TypeVar("Result")
Ctx = grpc.aio.ServicerContext[Any, Any]


class ServicerBase:
    def __init__(self, gateway: Gateway, admission: RpcAdmission) -> None:
        self.gateway = gateway
        self.admission = admission
        self.metrics = gateway.metrics
        self.default_deadline = gateway.settings.default_deadline_seconds
        self.max_deadline = gateway.settings.max_deadline_seconds

    def deadline(self, context: Ctx) -> float:
        return deadline_of(context, self.default_deadline, self.max_deadline)

    def check_count(self, count: int, field: str = "items") -> None:
        limit = self.gateway.settings.max_items_per_request
        if count == 0:
            raise InvalidArgument(field, "must contain at least one item")
        if count > limit:
            raise InvalidArgument(field, f"{count} items exceeds the limit of {limit} per request")

    def stream(
        self,
        method: str,
        requests: AsyncIterable[Req],
        answer: Callable[[Req], Awaitable[Resp]],
        refuse: Callable[[Req, common_pb2.ItemError], Resp],
    ) -> AsyncIterator[Resp]:
        """Answer each request within the stream's window; a bad item gets `refuse(...)`, and the
        stream goes on. Per-item outcomes are counted by status code."""
        return flattened(
            bounded_group_batches(
                singletons(requests),
                self._item_handler(method, answer, refuse),
                self.gateway.settings.stream_window,
                self.metrics.stream_window.labels(method),
                self.gateway.draining,
                **self._window_bytes(method),
            )
        )

    async def packed_stream(
        self,
        method: str,
        frames: AsyncIterable[Packed[Req]],
        answer: Callable[[Req], Awaitable[Resp]],
        refuse: Callable[[Req, common_pb2.ItemError], Resp],
        together: Grouped[Req, Resp] | None = None,
    ) -> AsyncIterator[list[Resp]]:
        """`stream` over frames of requests: the same window (counted in items), the same
        per-item answers, sent back in lists of whatever has finished (one frame each).

        With `together`, a frame's requests are answered in groups (of up to a quarter of the
        window, so the next group is read while one is answered) by one call each: one task per
        group instead of one per item, its answers sent as they finish."""
        window = self.gateway.settings.stream_window
        handle: Callable[[list[Req]], AsyncGenerator[list[Resp], None]]
        if together is None:
            size, handle = 1, self._item_handler(method, answer, refuse)
        else:
            size, handle = max(1, window // 4), together.answer

        async for batch in bounded_group_batches(
            # a BadFrame among the groups ends the stream (bounded_group_batches knows it)
            _unpacked(frames, self.gateway.settings.max_items_per_request, size),
            handle,
            window,
            self.metrics.stream_window.labels(method),
            self.gateway.draining,
            max_batch=MAX_ANSWERS_PER_FRAME,
            **self._window_bytes(method),
        ):
            yield batch

    def _window_bytes(self, method: str) -> dict[str, Any]:
        """A stream's bound in bytes (`bounded_group_batches`): each request weighs its encoded
        size, which holds its content."""
        return {
            "window_bytes": self.gateway.settings.stream_window_bytes,
            "weigh": _encoded_size,
            "bytes_in_window": self.metrics.stream_window_bytes.labels(method),
        }

    def _item_handler(
        self,
        method: str,
        answer: Callable[[Req], Awaitable[Resp]],
        refuse: Callable[[Req, common_pb2.ItemError], Resp],
    ) -> Callable[[list[Req]], AsyncGenerator[list[Resp], None]]:
        """Each request of a group answered on its own, in turn (streams make groups of one)."""
        items = self.metrics.stream_items
        latency = self.metrics.stream_item_duration.labels(method)

        async def each(group: list[Req]) -> AsyncGenerator[list[Resp], None]:
            for request in group:
                started = time.monotonic()
                try:
                    response = await answer(request)
                except OnespaceError as exc:
                    response = refuse(request, self.item_error(method, exc))
                else:
                    items.labels(method, "OK").inc()
                finally:
                    latency.observe(time.monotonic() - started)
                yield [response]

        return each

    def item_error(self, method: str, exc: OnespaceError) -> common_pb2.ItemError:
        """The per-item answer for `exc`, counted under its status code."""
        code = status_for(exc)
        self.metrics.stream_items.labels(method, code.name).inc()
        return common_pb2.ItemError(code=code.value[0], message=bounded_details(str(exc)))


def _encoded_size(request: Any) -> int:
    size: int = request.ByteSize()
    return size


class GroupAnswers(Generic[Req, Resp]):
    """What a packed stream's group answerers share: the stream's own refusal of an item, and the
    per-item outcome metrics, counted as the one-by-one path counts them (`_item_handler`).
    A subclass names its RPC in `METHOD`."""

    METHOD: str

    def __init__(
        self, servicer: ServicerBase, context: Ctx, refuse: Callable[[Req, common_pb2.ItemError], Resp]
    ) -> None:
        self.servicer = servicer
        self.gateway = servicer.gateway
        self.context = context
        self._refuse = refuse
        self._latency = servicer.metrics.stream_item_duration.labels(self.METHOD)
        self._ok = servicer.metrics.stream_items.labels(self.METHOD, "OK")

    def refused(self, request: Req, exc: OnespaceError) -> Resp:
        """The stream's answer refusing `request` for `exc`, counted under its status code."""
        return self._refuse(request, self.servicer.item_error(self.METHOD, exc))

    def part(
        self,
        wave: Sequence[tuple[int, Result | OnespaceError]],
        requests: Sequence[Req],
        respond: Callable[[int, Result], Resp],
        started: float,
    ) -> list[Resp]:
        """The answers to one wave of outcomes for `requests` (`(position, result or error)`
        pairs, as `Gateway.embed_inputs` and `upsert_each` hand them back): the stream's refusal
        of `requests[position]` for each error, `respond(position, result)` for each result."""
        answers: list[Resp] = []
        ok = 0
        for position, result in wave:
            if isinstance(result, OnespaceError):
                answers.append(self.refused(requests[position], result))
            else:
                answers.append(respond(position, result))
                ok += 1
        return self.answered(answers, ok, started)

    def answered(self, part: list[Resp], ok: int, started: float) -> list[Resp]:
        """A part of a group's answers, `ok` of them successes (refusals were counted by
        `refused`); each item's latency is from the group's start to its part."""
        self._ok.inc(ok)
        elapsed = time.monotonic() - started
        for _ in part:
            self._latency.observe(elapsed)
        return part


class Grouped(Protocol[Req, Resp]):
    """How a packed stream answers its requests a group at a time (see `packed_stream`)."""

    def answer(self, requests: list[Req]) -> AsyncGenerator[list[Resp], None]:
        """Answers in parts as they finish, every request answered once; a bad item is
        answered, never raised."""
        ...


class Packed(Protocol[Req_co]):
    """A frame of a packed stream (EmbedStreamPackedRequest, IngestPackedRequest)."""

    @property
    def requests(self) -> Sequence[Req_co]: ...


async def _unpacked(
    frames: AsyncIterable[Packed[Req]], limit: int, size: int
) -> AsyncIterator[list[Req] | BadFrame]:
    """The requests of each frame in turn, in groups of up to `size`. A frame that did not decode
    or carries more than `limit` requests ends the stream there (`frames[N]`), after the
    requests before it."""
    number = 0
    async for frame in frames:
        if isinstance(frame, Undecodable):
            yield BadFrame(frame.error(f"frames[{number}]", STOPS_HERE))
            return
        if len(frame.requests) > limit:
            yield BadFrame(
                InvalidArgument(
                    f"frames[{number}].requests",
                    f"{len(frame.requests)} items exceeds the limit of {limit} per frame{STOPS_HERE}",
                )
            )
            return
        requests = list(frame.requests)
        for start in range(0, len(requests), size):
            yield requests[start : start + size]
        number += 1
