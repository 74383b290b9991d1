from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from onespace.emulator import EmulatorConfig, FaultRates, Latency
from onespace.emulator.errors import ERROR_STATUS
from onespace.emulator.stats import UNRESOLVED
from onespace.models import COHERE_EMBED_V4, NOVA_MODEL, TITAN_TEXT_V2
from tests.unit.emulator.conftest import Bedrock

V2 = TITAN_TEXT_V2.id
TEXT = {"inputText": "hello"}
STATUS_TABLE = {
    "ThrottlingException": 429,
    "ModelNotReadyException": 429,
    "ServiceUnavailableException": 503,
    "InternalServerException": 500,
    "ModelTimeoutException": 408,
    "ServiceQuotaExceededException": 400,
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ModelErrorException": 424,
}


def test_status_table_matches_bedrock() -> None:
    assert ERROR_STATUS == STATUS_TABLE


@pytest.mark.parametrize(
    "model_id",
    [
        V2,
        "amazon.titan-embed-text-v2%3A0",
        "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v2:0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.titan-embed-text-v2:0",
        "us.amazon.titan-embed-text-v2:0",
    ],
)
async def test_model_ids_and_arns_resolve(bedrock: Bedrock, model_id: str) -> None:
    answer = await bedrock.invoke(model_id, TEXT)
    assert answer.status == 200, answer.raw
    assert bedrock.stats.calls[V2]["ok"] == 1


async def test_unencoded_colon_in_path_resolves(bedrock: Bedrock) -> None:
    answer = await bedrock.invoke(V2, TEXT, encode=False)
    assert answer.status == 200


@pytest.mark.parametrize(
    "model_id",
    [
        "amazon.titan-embed-text-v3:0",
        "arn:aws:bedrock:us-east-1::custom-model/amazon.titan-embed-text-v2:0",
        "arn:aws:s3:::foundation-model/amazon.titan-embed-text-v2:0",
        "xx.amazon.titan-embed-text-v2:0",
    ],
)
async def test_unknown_model_is_404(bedrock: Bedrock, model_id: str) -> None:
    answer = await bedrock.invoke(model_id, TEXT)
    assert (answer.status, answer.error_type) == (404, "ResourceNotFoundException")
    assert model_id in answer.message
    assert bedrock.stats.calls[UNRESOLVED]["ResourceNotFoundException"] == 1


@pytest.mark.parametrize("code", sorted(STATUS_TABLE))
async def test_forced_errors_have_the_real_status_header_and_body(bedrock: Bedrock, code: str) -> None:
    forced = {"code": code, "count": 1, "message": f"forced {code}"}
    assert (await bedrock.admin("POST", "config", {"force_error": forced})).status == 200
    answer = await bedrock.invoke(V2, TEXT)
    assert answer.status == STATUS_TABLE[code]
    assert answer.error_type == code
    assert answer.headers["Content-Type"] == "application/json"
    uuid.UUID(answer.headers["x-amzn-RequestId"])
    assert answer.json["message"] == f"forced {code}"
    if code == "ModelErrorException":
        assert answer.json["originalStatusCode"] == 500 and answer.json["resourceName"] == V2
    else:
        assert set(answer.json) == {"message"}
    assert (await bedrock.invoke(V2, TEXT)).status == 200  # count 1: the next call is served
    recent = bedrock.stats.recent
    assert [r["outcome"] for r in recent] == [code, "ok"]
    assert recent[0]["request_id"] == answer.headers["x-amzn-RequestId"]


async def test_forced_error_for_one_model_only(bedrock: Bedrock) -> None:
    forced = {"code": "AccessDeniedException", "count": 2, "model": COHERE_EMBED_V4.id}
    await bedrock.admin("POST", "config", {"force_error": forced})
    assert (await bedrock.invoke(V2, TEXT)).status == 200
    cohere = {"input_type": "search_query", "texts": ["x"]}
    assert [(await bedrock.invoke(COHERE_EMBED_V4.id, cohere)).status for _ in range(3)] == [403, 403, 200]


async def test_magic_text_forces_an_error(bedrock: Bedrock) -> None:
    answer = await bedrock.invoke(V2, {"inputText": "onespace-emulator-error:ModelErrorException"})
    assert (answer.status, answer.error_type) == (424, "ModelErrorException")


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(rpm=3)])
async def test_rpm_quota_throttles(bedrock: Bedrock) -> None:
    statuses = [(await bedrock.invoke(V2, TEXT)).status for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    answer = await bedrock.invoke(V2, TEXT)
    assert answer.error_type == "ThrottlingException" and "3 RPM" in answer.message
    # Quotas are per model: another model still has its whole bucket.
    nova = {
        "taskType": "SINGLE_EMBEDDING",
        "singleEmbeddingParams": {
            "embeddingPurpose": "GENERIC_INDEX",
            "text": {"truncationMode": "END", "value": "x"},
        },
    }
    assert (await bedrock.invoke(NOVA_MODEL.id, nova)).status == 200
    await bedrock.admin("POST", "reset")
    assert (await bedrock.invoke(V2, TEXT)).status == 200


CONCURRENCY = EmulatorConfig(max_concurrency=2, latency={"text": Latency(fixed_ms=500)})


@pytest.mark.parametrize("emulator_config", [CONCURRENCY])
async def test_concurrency_cap_throttles(bedrock: Bedrock) -> None:
    answers = await asyncio.gather(*(bedrock.invoke(V2, TEXT) for _ in range(5)))
    statuses = sorted(a.status for a in answers)
    assert statuses == [200, 200, 429, 429, 429]
    assert bedrock.stats.max_in_flight == 2


@pytest.mark.parametrize("emulator_config", [CONCURRENCY.updated({"overflow": "queue", "latency_ms": 100})])
async def test_concurrency_cap_queues(bedrock: Bedrock) -> None:
    answers = await asyncio.gather(*(bedrock.invoke(V2, TEXT) for _ in range(6)))
    assert [a.status for a in answers] == [200] * 6
    assert bedrock.stats.max_in_flight == 2
    assert bedrock.stats.queued >= 1


@pytest.mark.parametrize(
    ("rate", "code"),
    [
        ("throttle", "ThrottlingException"),
        ("not_ready", "ModelNotReadyException"),
        ("unavailable", "ServiceUnavailableException"),
        ("internal", "InternalServerException"),
        ("timeout", "ModelTimeoutException"),
    ],
)
async def test_fault_rate_one_always_fails(bedrock: Bedrock, rate: str, code: str) -> None:
    await bedrock.admin("POST", "config", {"faults": {rate: 1.0}})
    answer = await bedrock.invoke(V2, TEXT)
    assert (answer.status, answer.error_type) == (STATUS_TABLE[code], code)


async def test_fault_rates_are_seeded(bedrock: Bedrock) -> None:
    async def run() -> list[int]:
        await bedrock.admin("POST", "config", {"seed": 42, "faults": {"throttle": 0.3, "internal": 0.2}})
        out = [(await bedrock.invoke(V2, TEXT)).status for _ in range(30)]
        await bedrock.admin("POST", "config", {"seed": None})
        return out

    first, second = await run(), await run()
    assert first == second
    assert {200, 429, 500} == set(first)


async def test_admin_config_roundtrip_and_validation(bedrock: Bedrock) -> None:
    answer = await bedrock.admin(
        "POST",
        "config",
        {
            "latency_ms": 5,
            "latency": {"video": {"jitter_ms": 9}},
            "rpm": 100,
            "rpm_by_model": {V2: 7},
            "faults": {"throttle": 0.25},
            "max_concurrency": 3,
            "overflow": "queue",
            "per_item_ms": 1.5,
        },
    )
    assert answer.status == 200
    config = (await bedrock.admin("GET", "config")).json
    assert config == answer.json
    assert config["latency"]["video"] == {"fixed_ms": 5.0, "jitter_ms": 9.0}
    assert config["latency"]["text"] == {"fixed_ms": 5.0, "jitter_ms": 0.0}
    assert (config["rpm"], config["rpm_by_model"], config["max_concurrency"]) == (100, {V2: 7}, 3)
    assert config["faults"]["throttle"] == 0.25
    bad: list[tuple[Any, str]] = [
        ({"rmp": 5}, "rmp: unknown setting"),
        ({"faults": {"throttle": 0.7, "internal": 0.7}}, "sum to at most 1"),
        ({"faults": {"boom": 0.1}}, "faults.boom: unknown setting"),
        ({"latency": {"smell": {"fixed_ms": 1}}}, "latency.smell: not a modality"),
        ({"rpm": "many"}, "rpm: expected a number"),
        ({"overflow": "drop"}, "overflow"),
        ({"force_error": {"code": "Oops"}}, "force_error.code"),
        ({"force_error": {"code": "ThrottlingException", "count": 0}}, "force_error.count"),
        ([1, 2], "JSON object"),
    ]
    for patch, needle in bad:
        answer = await bedrock.admin("POST", "config", patch)
        assert answer.status == 400, patch
        assert needle in answer.message
    assert (await bedrock.admin("GET", "config")).json == config  # a refused patch changes nothing
    assert (await bedrock.admin("POST", "config", data=b"{")).status == 400


async def test_admin_stats_reset_and_models(bedrock: Bedrock) -> None:
    await bedrock.invoke(V2, TEXT)
    await bedrock.invoke(V2, {"inputText": ""})
    stats = (await bedrock.admin("GET", "stats")).json
    assert stats["calls"] == {V2: {"ok": 1, "ValidationException": 1}}
    assert stats["total_calls"] == 2 and stats["max_in_flight"] == 1 and stats["in_flight"] == 0
    assert [r["outcome"] for r in stats["recent"]] == ["ok", "ValidationException"]
    assert (await bedrock.admin("POST", "reset")).status == 200
    assert (await bedrock.admin("GET", "stats")).json["total_calls"] == 0
    models = (await bedrock.admin("GET", "models")).json["models"]
    assert NOVA_MODEL.id in models and "amazon.titan-embed-text-v1" in models


async def test_body_over_the_cap_is_refused(bedrock: Bedrock) -> None:
    answer = await bedrock.invoke(V2, b"{" + b" " * 25_000_001 + b"}")
    assert (answer.status, answer.error_type) == (400, "ValidationException")
    assert "25000000" in answer.message


def test_fault_rates_must_sum_to_at_most_one() -> None:
    with pytest.raises(ValueError, match="sum to at most 1"):
        EmulatorConfig(faults=FaultRates(throttle=0.6, unavailable=0.6))


async def test_an_emulator_failure_is_still_a_bedrock_shaped_500(
    bedrock: Bedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("featurizer exploded")

    monkeypatch.setattr("onespace.emulator.app.embed_all", broken)
    answer = await bedrock.invoke(V2, TEXT)
    assert (answer.status, answer.error_type) == (500, "InternalServerException")
    assert "featurizer exploded" in answer.message
    assert bedrock.stats.calls[V2] == {"InternalServerException": 1}
