"""Inputs a model family cannot express are refused before any call: the emulator sees nothing."""

from __future__ import annotations

import pytest

from onespace.content import Content, Purpose, TruncationMode
from onespace.emulator import RunningEmulator
from onespace.errors import InvalidArgument, NotFound, OnespaceError
from onespace.models import (
    COHERE_EMBED_ENGLISH_V3,
    COHERE_EMBED_V4,
    NOVA_MODEL,
    TITAN_MULTIMODAL_G1,
    TITAN_TEXT_V2,
    Modality,
)
from onespace.providers.base import EmbedInput
from onespace.providers.bedrock import BedrockProvider
from tests import media
from tests.unit.bedrock.conftest import item

NOVA, V2, MM = NOVA_MODEL.id, TITAN_TEXT_V2.id, TITAN_MULTIMODAL_G1.id
V3, V4 = COHERE_EMBED_ENGLISH_V3.id, COHERE_EMBED_V4.id
PNG = Content(Modality.IMAGE, data=media.png(1))

CASES: list[tuple[str, list[EmbedInput], type[OnespaceError], str]] = [
    ("titan v2 image", [item(PNG, V2, 1024)], InvalidArgument, "does not accept image"),
    (
        "titan mm audio",
        [item(Content(Modality.AUDIO, data=media.wav(440.0)), MM, 1024)],
        InvalidArgument,
        "does not accept audio",
    ),
    (
        "titan mm webp",
        [item(Content(Modality.IMAGE, data=media.webp(1)), MM, 1024)],
        InvalidArgument,
        "webp is not a supported image format",
    ),
    (
        "titan s3",
        [item(Content(Modality.TEXT, s3_uri="s3://b/k.txt"), V2, 1024)],
        InvalidArgument,
        "does not accept s3://",
    ),
    (
        "cohere s3",
        [item(Content(Modality.IMAGE, s3_uri="s3://b/k.png"), V4, 1536)],
        InvalidArgument,
        "does not accept s3://",
    ),
    (
        "cohere image + text",
        [item(PNG, V4, 1536), item("caption", V4, 1536)],
        InvalidArgument,
        "inputs: 2 inputs exceed the 1",
    ),
    (
        "cohere 97 texts",
        [item(f"t{i}", V3, 1024) for i in range(97)],
        InvalidArgument,
        "97 inputs exceed the 96",
    ),
    ("cohere v3 text too long", [item("a" * 2049, V3, 1024)], InvalidArgument, "exceeds the maximum of 2048"),
    (
        "two nova inputs",
        [item("a", NOVA, 256), item("b", NOVA, 256)],
        InvalidArgument,
        "2 inputs exceed the 1 one call",
    ),
    ("nova bad dimension", [item("a", NOVA, 512)], InvalidArgument, "512 is not offered"),
    ("cohere v3 dimension", [item("a", V3, 256)], InvalidArgument, "256 is not offered"),
    (
        "mixed purposes",
        [item("a", V4, 256), item("b", V4, 256, Purpose.TEXT_RETRIEVAL)],
        InvalidArgument,
        "inputs[1]: all inputs of one call must share",
    ),
    ("mixed dimensions", [item("a", V4, 256), item("b", V4, 512)], InvalidArgument, "inputs[1]"),
    (
        "nova too long with NONE",
        [item(Content(Modality.TEXT, text="a" * 9000, truncation=TruncationMode.NONE), NOVA, 256)],
        InvalidArgument,
        "truncation_mode is NONE",
    ),
    ("nova blank text", [item("   ", NOVA, 256)], InvalidArgument, "must not be empty"),
    (
        "nova bytes that are no image",
        [item(Content(Modality.IMAGE, data=b"hello there"), NOVA, 256)],
        InvalidArgument,
        "not a recognised image format",
    ),
    (
        "nova bad s3 uri",
        [item(Content(Modality.IMAGE, s3_uri="https://x/y.png"), NOVA, 256)],
        InvalidArgument,
        "is not of the form s3://bucket/key",
    ),
    ("unknown model", [item("a", "amazon.titan-embed-text-v1", 1536)], NotFound, "unknown model"),
]


@pytest.mark.parametrize(("case", "inputs", "kind", "needle"), CASES, ids=[c[0] for c in CASES])
async def test_refused_before_any_call(
    provider: BedrockProvider,
    emulator: RunningEmulator,
    case: str,
    inputs: list[EmbedInput],
    kind: type[OnespaceError],
    needle: str,
) -> None:
    with pytest.raises(kind) as info:
        await provider.embed(inputs)
    assert needle in str(info.value), case
    assert emulator.state.stats.total() == 0
    assert provider.counters.calls == 0
