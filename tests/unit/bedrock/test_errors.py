"""Bedrock errors through the real client: each maps to its onespace type with Bedrock's message
and request id; transient ones are retried (and counted) within the deadline."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from onespace.config import Settings
from onespace.emulator import EmulatorConfig, FaultRates, Latency, RunningEmulator
from onespace.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    OnespaceError,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from onespace.models import COHERE_EMBED_V4, NOVA_MODEL, TITAN_TEXT_V2
from onespace.providers.bedrock import BedrockProvider, RetryPolicy
from tests.unit.bedrock.conftest import FAST_RETRY, RecordingEvents, events, item

NOVA = NOVA_MODEL.id

NON_RETRYABLE: list[tuple[str, type[OnespaceError]]] = [
    ("ValidationException", InvalidArgument),
    ("AccessDeniedException", PermissionDenied),
    ("ResourceNotFoundException", NotFound),
    ("ModelTimeoutException", DeadlineExceeded),
    ("ServiceQuotaExceededException", ResourceExhausted),
    ("ModelErrorException", Internal),
]


@pytest.mark.parametrize(("code", "kind"), NON_RETRYABLE)
async def test_non_retryable_errors_map_once(
    provider: BedrockProvider, emulator: RunningEmulator, code: str, kind: type[OnespaceError]
) -> None:
    emulator.state.force(code, f"the service says {code}", count=5)
    with pytest.raises(kind) as info:
        await provider.embed([item("hello", NOVA, 256)])
    error = info.value
    assert type(error) is kind
    assert f"the service says {code}" in str(error)
    assert error.request_id == emulator.state.stats.recent[-1]["request_id"]
    assert error.request_id in str(error)
    assert emulator.state.stats.total() == 1 and provider.counters.calls == 1
    assert events(provider).retries == []
    if isinstance(error, InvalidArgument):
        assert error.field == "content"
    if isinstance(error, ResourceExhausted):
        assert error.retry_after_seconds is None
    assert isinstance(error.__cause__, Exception)  # raised from the botocore error


@pytest.mark.parametrize(
    ("code", "kind", "reason"),
    [
        ("ThrottlingException", ResourceExhausted, "throttling"),
        ("ModelNotReadyException", Unavailable, "not_ready"),
        ("ServiceUnavailableException", Unavailable, "5xx"),
        ("InternalServerException", Unavailable, "5xx"),
    ],
)
async def test_retryable_errors_are_retried_then_mapped(
    provider: BedrockProvider, emulator: RunningEmulator, code: str, kind: type[OnespaceError], reason: str
) -> None:
    emulator.state.force(code, f"busy: {code}", count=100)
    with pytest.raises(kind) as info:
        await provider.embed([item("hello", TITAN_TEXT_V2.id, 256)])
    error = info.value
    assert isinstance(error, ResourceExhausted | Unavailable)
    assert error.retry_after_seconds is not None and error.retry_after_seconds > 0
    assert f"busy: {code}" in str(error)
    assert error.request_id == emulator.state.stats.recent[-1]["request_id"]
    attempts = FAST_RETRY.max_attempts
    assert emulator.state.stats.calls[TITAN_TEXT_V2.id][code] == attempts
    assert provider.counters.calls == attempts
    assert events(provider).retries == [(TITAN_TEXT_V2.id, reason)] * (attempts - 1)
    assert provider.counters.retries[reason] == attempts - 1
    throttled = attempts if code == "ThrottlingException" else 0
    assert len(events(provider).throttled_models) == provider.counters.throttles == throttled


async def test_a_retry_that_succeeds_returns_the_vector(
    provider: BedrockProvider, emulator: RunningEmulator
) -> None:
    emulator.state.force("ThrottlingException", count=2)
    (result,) = await provider.embed([item("hello", NOVA, 256)])
    assert result.embeddings[0].vector.shape == (256,)
    assert emulator.state.stats.calls[NOVA] == {"ThrottlingException": 2, "ok": 1}
    assert result.request_id == emulator.state.stats.recent[-1]["request_id"]
    assert provider.counters.throttles == 2 and provider.counters.retries["throttling"] == 2


FLAKY = EmulatorConfig(
    seed=5, faults=FaultRates(throttle=0.2, unavailable=0.05, internal=0.05, not_ready=0.02)
)


@pytest.mark.parametrize("emulator_config", [FLAKY])
@pytest.mark.parametrize("retry_policy", [RetryPolicy(max_attempts=12, base_delay=0.001, max_delay=0.002)])
async def test_throttling_and_transient_5xx_all_succeed_with_retries(
    provider: BedrockProvider, emulator: RunningEmulator
) -> None:
    n = 40
    for i in range(n):
        (result,) = await provider.embed([item(f"document {i}", COHERE_EMBED_V4.id, 256)])
        assert result.embeddings[0].vector.shape == (256,)
    stats = emulator.state.stats
    assert stats.calls[COHERE_EMBED_V4.id]["ok"] == n
    assert stats.total() > n
    assert sum(provider.counters.retries.values()) == stats.total() - n
    assert provider.counters.throttles == stats.calls[COHERE_EMBED_V4.id]["ThrottlingException"] > 0
    assert provider.counters.retries["5xx"] > 0
    assert provider.counters.calls == stats.total()


async def test_deadline_already_passed_makes_no_call(
    provider: BedrockProvider, emulator: RunningEmulator
) -> None:
    with pytest.raises(DeadlineExceeded, match="deadline passed before Bedrock was called"):
        await provider.embed([item("late", NOVA, 256)], deadline=time.monotonic() - 1)
    assert emulator.state.stats.total() == 0


async def warm(provider: BedrockProvider) -> None:
    """One call with time to spare before a test's short deadline: on a loaded machine the
    client's first request (botocore's models, the learned request template) once took longer
    than 0.3 s, so the call under test never reached Bedrock."""
    await provider.embed([item("warm", NOVA, 256)], deadline=time.monotonic() + 30)


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(latency={"text": Latency(fixed_ms=500)})])
async def test_deadline_cuts_a_slow_call(provider: BedrockProvider) -> None:
    await warm(provider)
    with pytest.raises(DeadlineExceeded, match="while waiting for Bedrock"):
        await provider.embed([item("slow", NOVA, 256)], deadline=time.monotonic() + 0.1)


@pytest.mark.parametrize("retry_policy", [RetryPolicy(max_attempts=10, base_delay=1.0, max_delay=2.0)])
async def test_no_backoff_past_the_deadline(provider: BedrockProvider, emulator: RunningEmulator) -> None:
    await warm(provider)
    emulator.state.reset()
    throttles, retries = provider.counters.throttles, sum(provider.counters.retries.values())
    emulator.state.force("ThrottlingException", count=100)
    with pytest.raises(ResourceExhausted) as info:
        await provider.embed([item("hurry", NOVA, 256)], deadline=time.monotonic() + 0.3)
    assert emulator.state.stats.total() == 1  # the first backoff (>= 0.5 s) would end past the deadline
    assert info.value.retry_after_seconds is not None and info.value.retry_after_seconds >= 0.5
    assert provider.counters.throttles == throttles + 1
    assert sum(provider.counters.retries.values()) == retries


class WaitsForever(RecordingEvents):
    """An engine with no capacity to give: its backoff never ends on its own."""

    async def backoff(self, model: str, reason: str, delay: float) -> None:
        self.backoffs.append((model, reason))
        await asyncio.Event().wait()


async def test_the_engines_backoff_is_bounded_by_the_deadline(
    provider: BedrockProvider, emulator: RunningEmulator
) -> None:
    await warm(provider)
    emulator.state.reset()
    provider.events = WaitsForever()
    emulator.state.force("ThrottlingException", count=100)
    with pytest.raises(ResourceExhausted) as info:
        await provider.embed([item("waits", NOVA, 256)], deadline=time.monotonic() + 0.3)
    assert provider.events.backoffs == [(NOVA, "throttling")]  # asked once, then the deadline came
    assert emulator.state.stats.total() == 1
    assert info.value.retry_after_seconds is not None


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_connection_errors_are_unavailable_after_retries() -> None:
    settings = Settings(
        bedrock_endpoint_url=f"http://127.0.0.1:{_closed_port()}", bedrock_connect_timeout=1.0
    )
    provider = BedrockProvider(settings, retry=RetryPolicy(3, 0.001, 0.002), seed=0)
    await provider.start()
    try:
        with pytest.raises(Unavailable, match="connection error") as info:
            await provider.embed([item("anyone there?", NOVA, 256)])
    finally:
        await provider.close()
    assert info.value.retry_after_seconds is not None
    assert provider.counters.calls == 3 and provider.counters.retries["connection"] == 2


async def test_embed_before_start_is_a_failed_precondition(emulator: RunningEmulator) -> None:
    provider = BedrockProvider(Settings(bedrock_endpoint_url=emulator.url))
    with pytest.raises(FailedPrecondition, match="not started"):
        await provider.embed([item("x", NOVA, 256)])


async def test_missing_credentials_are_permission_denied(
    provider: BedrockProvider, emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    fresh = BedrockProvider(Settings(bedrock_endpoint_url=emulator.url), retry=FAST_RETRY)
    await fresh.start()
    try:
        with pytest.raises(PermissionDenied, match="credential chain"):
            await fresh.embed([item("x", NOVA, 256)])
    finally:
        await fresh.close()
    assert emulator.state.stats.total() == 0


@pytest.fixture
async def broken_bedrock() -> AsyncIterator[str]:
    """A server answering 200 with bodies that break the documented schema."""

    async def handler(request: web.Request) -> web.Response:
        bodies = {
            "wrong-dimension": b'{"embeddings":[{"embeddingType":"TEXT","embedding":[0.5,0.5]}]}',
            "not-json": b"<html>oops</html>",
            "missing-key": b'{"vectors":[]}',
        }
        text = (await request.json())["singleEmbeddingParams"]["text"]["value"]
        return web.Response(body=bodies[text], headers={"x-amzn-RequestId": f"rid-{text}"})

    app = web.Application()
    app.router.add_post(r"/model/{model:.+}/invoke", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}"
    await runner.cleanup()


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("wrong-dimension", "has 2 dimensions, expected 256"),
        ("not-json", "not valid JSON"),
        ("missing-key", "missing 'embeddings'"),
    ],
)
async def test_malformed_responses_are_internal_with_the_request_id(
    broken_bedrock: str, case: str, needle: str
) -> None:
    provider = BedrockProvider(Settings(bedrock_endpoint_url=broken_bedrock), retry=FAST_RETRY)
    await provider.start()
    try:
        with pytest.raises(Internal, match="unexpected response") as info:
            await provider.embed([item(case, NOVA, 256)])
    finally:
        await provider.close()
    assert needle in str(info.value)
    assert info.value.request_id == f"rid-{case}"


async def test_unknown_profile_is_permission_denied_at_start() -> None:
    provider = BedrockProvider(Settings(bedrock_profile="no-such-profile"))
    with pytest.raises(PermissionDenied, match="no-such-profile"):
        await provider.start()
    await provider.close()  # closing an unstarted provider is harmless
