"""The per-call fast path (client.py): learned from botocore's first call per model, signed like
botocore, answered and failing exactly like `invoke_model`; and the retry and parsing rules the
gateway's fan-out relies on (throttles retried until the deadline, numpy vector checks)."""

from __future__ import annotations

import datetime as dt
import time
from unittest import mock

import botocore.auth
import numpy as np
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from onespace.config import Settings
from onespace.emulator import RunningEmulator
from onespace.errors import OnespaceError, ResourceExhausted
from onespace.models import COHERE_EMBED_V4, NOVA_MODEL, TITAN_TEXT_V2
from onespace.providers.bedrock import BedrockProvider, RetryPolicy
from onespace.providers.bedrock.client import Route, error_response
from onespace.providers.bedrock.family import BadResponse, vector
from onespace.providers.bedrock.sigv4 import TemplateSigner
from tests.unit.bedrock.conftest import FAST_RETRY, events, item
from tests.unit.bedrock.test_errors import NON_RETRYABLE

NOVA = NOVA_MODEL.id
STATIC = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "aiobotocore/2  x"}


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8787/model/amazon.nova-2-multimodal-embeddings-v1%3A0/invoke",
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A%3A"
        "foundation-model%2Famazon.titan-embed-text-v2%3A0/invoke",
        "https://BEDROCK-runtime.eu-west-1.amazonaws.com:443/model/x/invoke",
        "https://[::1]:8443/model/x/invoke?b=2&a=1",
    ],
)
@pytest.mark.parametrize("token", [None, "session  token=="])
def test_the_template_signer_signs_exactly_like_botocore(url: str, token: str | None) -> None:
    credentials = ReadOnlyCredentials("AKIDEXAMPLE", "secret/key+example", token)
    now = dt.datetime(2026, 11, 26, 15, 11, 0)
    body = b'{"inputText": "h\xc3\xa9llo"}'
    theirs = AWSRequest("POST", url, headers=dict(STATIC), data=body)
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=now):
        SigV4Auth(credentials, "bedrock", "eu-west-1").add_auth(theirs)
    signer = TemplateSigner(url, STATIC, "eu-west-1", "bedrock")
    ours = signer.sign(body, credentials, now.strftime("%Y%m%dT%H%M%SZ"))
    for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
        assert ours.get(name) == theirs.headers.get(name), name
    assert {k: ours[k] for k in STATIC} == STATIC
    # the signing key is cached per day and secret: a second body still matches
    again = AWSRequest("POST", url, headers=dict(STATIC), data=b"{}")
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=now):
        SigV4Auth(credentials, "bedrock", "eu-west-1").add_auth(again)
    second = signer.sign(b"{}", credentials, now.strftime("%Y%m%dT%H%M%SZ"))
    assert second["Authorization"] == again.headers["Authorization"]


def test_only_sigv4_signed_requests_with_a_signed_payload_are_learned() -> None:
    url = "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/invoke"
    auth = "AWS4-HMAC-SHA256 Credential=AKID/20261126/us-east-1/bedrock/aws4_request, SignedHeaders=x, Signature=y"  # noqa: E501
    headers = {
        **STATIC,
        "Authorization": auth.encode(),
        "X-Amz-Date": b"20261126T000000Z",
        "Content-Length": "2",
    }
    route = Route.learn(url, headers)
    assert route is not None
    assert (route.region, route.signing_name) == ("us-east-1", "bedrock")
    assert dict(route.headers) == STATIC  # nothing that changes per call
    assert Route.learn(url, {**STATIC, "Authorization": b"Bearer bedrock-api-key"}) is None
    assert Route.learn(url, {**headers, "X-Amz-Content-SHA256": b"UNSIGNED-PAYLOAD"}) is None
    assert Route.learn(url, STATIC) is None


def test_error_responses_are_parsed_like_botocore_rest_json() -> None:
    headers = {
        "x-amzn-errortype": "ThrottlingException:http://internal.amazon.com/",
        "x-amzn-requestid": "r1",
    }
    parsed = error_response(429, headers, b'{"message":"slow down"}')
    assert parsed["Error"] == {"Code": "ThrottlingException", "Message": "slow down"}
    assert parsed["ResponseMetadata"]["RequestId"] == "r1"
    assert parsed["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert error_response(400, {}, b'{"__type":"a#ValidationException","Message":"m"}')["Error"] == {
        "Code": "ValidationException",
        "Message": "m",
    }
    assert error_response(503, {}, b"<html>")["Error"] == {"Code": "503", "Message": ""}


async def test_the_first_call_per_model_learns_the_route_and_later_ones_use_it(
    provider: BedrockProvider, emulator: RunningEmulator
) -> None:
    client = provider._client
    (slow,) = await provider.embed([item("same text", NOVA, 256)])
    assert client.fast_calls == 0
    (fast,) = await provider.embed([item("same text", NOVA, 256)])
    assert client.fast_calls == 1
    assert np.array_equal(slow.embeddings[0].vector, fast.embeddings[0].vector)
    assert fast.request_id == emulator.state.stats.recent[-1]["request_id"]
    await provider.embed([item("other model", TITAN_TEXT_V2.id, 256)])  # a route per model
    assert client.fast_calls == 1
    await provider.embed([item("a", COHERE_EMBED_V4.id, 256), item("b", COHERE_EMBED_V4.id, 256)])
    await provider.embed([item("c", COHERE_EMBED_V4.id, 256), item("d", COHERE_EMBED_V4.id, 256)])
    assert client.fast_calls == 2
    assert emulator.state.stats.calls[NOVA] == {"ok": 2}


@pytest.mark.parametrize(("code", "kind"), NON_RETRYABLE)
async def test_errors_on_the_fast_path_map_like_the_botocore_path(
    provider: BedrockProvider, emulator: RunningEmulator, code: str, kind: type[OnespaceError]
) -> None:
    await provider.embed([item("warm up", NOVA, 256)])
    emulator.state.force(code, f"the service says {code}", count=1)
    with pytest.raises(kind) as info:
        await provider.embed([item("hello", NOVA, 256)])
    assert provider._client.fast_calls == 1
    assert type(info.value) is kind
    assert f"the service says {code}" in str(info.value)
    assert info.value.request_id == emulator.state.stats.recent[-1]["request_id"]


async def test_the_fast_path_can_be_switched_off(emulator: RunningEmulator) -> None:
    settings = Settings(bedrock_endpoint_url=emulator.url, bedrock_fast_path=False)
    provider = BedrockProvider(settings, retry=FAST_RETRY)
    await provider.start()
    try:
        for text in ("one", "two", "three"):
            await provider.embed([item(text, NOVA, 256)])
    finally:
        await provider.close()
    assert provider._client.fast_calls == 0 and emulator.state.stats.calls[NOVA] == {"ok": 3}


@pytest.mark.parametrize("retry_policy", [RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.002)])
async def test_throttles_are_retried_until_the_deadline_not_max_attempts(
    provider: BedrockProvider, emulator: RunningEmulator
) -> None:
    emulator.state.force("ThrottlingException", count=6)
    (result,) = await provider.embed([item("patience", NOVA, 256)], deadline=time.monotonic() + 30)
    assert result.embeddings[0].vector.shape == (256,)
    assert emulator.state.stats.calls[NOVA] == {"ThrottlingException": 6, "ok": 1}
    assert provider.counters.throttles == 6 and len(events(provider).throttled_models) == 6
    # without a deadline, and for other transient errors, max_attempts still bounds the attempts
    emulator.state.force("ThrottlingException", count=6)
    with pytest.raises(ResourceExhausted):
        await provider.embed([item("no deadline", NOVA, 256)])
    assert emulator.state.stats.calls[NOVA]["ThrottlingException"] == 8


def test_backoff_grows_exponentially_to_one_second_by_default() -> None:
    import random

    policy, rng = RetryPolicy(), random.Random(0)
    caps = [min(1.0, 0.02 * 2 ** (n - 1)) for n in range(1, 40)]  # the first wait 10-20 ms
    for n, cap in enumerate(caps, start=1):
        assert cap / 2 <= policy.backoff(n, rng) <= cap
    assert policy.backoff(10_000, rng) <= 1.0  # no overflow however long the deadline


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ([0.5, "x"], "not a list of numbers"),
        ([0.5, None], "not a list of numbers"),
        ([[0.5], [0.5]], "not a list of numbers"),
        ([True, False], "not a list of numbers"),
        ({"a": 1}, "not a list of numbers"),
        ([0.5], "has 1 dimensions, expected 2"),
        ([0.5, float("inf")], "non-finite"),
        ([0.5, 1e39], "non-finite"),  # beyond float32
        ([0.5, 2**70], "not a list of numbers"),  # an integer numpy cannot hold
    ],
)
def test_vectors_are_checked_with_numpy(value: object, needle: str) -> None:
    with pytest.raises(BadResponse, match=needle):
        vector(value, 2, "embedding")


def test_a_valid_vector_becomes_float32() -> None:
    out = vector([1, 0.25, -3], 3, "embedding")
    assert out.dtype == np.float32 and out.tolist() == [1.0, 0.25, -3.0]
