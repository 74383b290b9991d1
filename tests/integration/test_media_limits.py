"""Media limits over a real server: media cut short, or decoding to more than the limits allow, is
INVALID_ARGUMENT naming the item and the reason; a bomb never reaches Bedrock; whole media embeds as
the local provider embeds it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from onespace.content import Content, Modality
from onespace.emulator import EmulatorConfig, RunningEmulator, running_emulator
from onespace.providers.local import embed_content
from onespace_client.v1 import collections_pb2, common_pb2, data_pb2, embed_pb2, search_pb2
from tests import media
from tests.harness import Running, running_gateway
from tests.unit.bedrock.conftest import aws_env  # noqa: F401 - autouse: dummy credentials
from tests.unit.providers.limits import encoded, mp4_index_first, picture, png_claiming

INVALID = grpc.StatusCode.INVALID_ARGUMENT


async def refused(gw: Running, *contents: common_pb2.Content) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gw.embed.Embed(embed_pb2.EmbedRequest(items=contents))
    assert err.value.code() == INVALID, err.value.details()
    return err.value.details() or ""


def truncated_media(tmp_path: Path) -> dict[str, tuple[common_pb2.Content, str]]:
    wav = media.wav(440, seconds=1.0, sample_rate=44100)
    mp3 = media.mp3(440, seconds=1.0, sample_rate=44100)
    mp4 = mp4_index_first(2.0, tmp_path)
    png = media.png(1, size=300)
    return {
        "wav": (
            common_pb2.Content(audio=wav[:1000]),
            "audio: cannot decode wav audio: truncated: header declares 44100 frames, 1000 bytes hold 478",
        ),
        "mp3": (
            common_pb2.Content(audio=mp3[:2705]),
            f"audio: cannot decode mp3 audio: truncated: its Xing header declares {len(mp3)} bytes",
        ),
        "mp4": (
            common_pb2.Content(video=mp4[: len(mp4) * 3 // 4]),
            "video: cannot decode mp4 video: truncated: ",
        ),
        "png": (common_pb2.Content(image=png[:-12]), "image: cannot decode png image: truncated: "),
    }


@pytest.mark.parametrize("fmt", ["wav", "mp3", "mp4", "png"])
async def test_truncated_media_is_invalid_argument(gateway: Running, fmt: str, tmp_path: Path) -> None:
    content, expected = truncated_media(tmp_path)[fmt]
    assert (await refused(gateway, content)).startswith(f"items[0].{expected}")


async def test_a_decoding_error_names_the_item_it_was_found_in(gateway: Running, tmp_path: Path) -> None:
    """The provider decodes one input without knowing which item it is; the gateway names it."""
    wav, expected = truncated_media(tmp_path)["wav"]
    good = common_pb2.Content(audio=media.wav(440))
    assert (await refused(gateway, good, wav)).startswith(f"items[1].{expected}")
    assert (await refused(gateway, wav, good)).startswith(f"items[0].{expected}")
    await gateway.collections.CreateCollection(
        collections_pb2.CreateCollectionRequest(
            config=collections_pb2.CollectionConfig(name="c", dimension=256)
        )
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gateway.data.Upsert(
            data_pb2.UpsertRequest(
                collection="c",
                items=[data_pb2.Item(id="ok", content=good), data_pb2.Item(id="cut", content=wav)],
            )
        )
    assert err.value.code() == INVALID
    assert (err.value.details() or "").startswith(f"items[1].content.{expected}")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gateway.search.Search(search_pb2.SearchRequest(collection="c", content=wav))
    assert err.value.code() == INVALID
    assert (err.value.details() or "").startswith(f"content.{expected}")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gateway.search.SearchBatch(
            search_pb2.SearchBatchRequest(
                queries=[
                    search_pb2.SearchRequest(collection="c", content=good),
                    search_pb2.SearchRequest(collection="c", content=wav),
                ]
            )
        )
    assert err.value.code() == INVALID
    assert (err.value.details() or "").startswith(f"queries[1].content.{expected}")


async def test_an_image_declaring_too_many_pixels_is_refused_naming_the_item(gateway: Running) -> None:
    bomb = png_claiming(8000, 6000)  # 70 bytes
    details = await refused(gateway, common_pb2.Content(image=bomb))
    assert details.startswith("items[0].image: 8000x6000 = 48000000 pixels exceeds the limit of 40000000")
    assert "max_image_pixels" in details
    await gateway.collections.CreateCollection(
        collections_pb2.CreateCollectionRequest(
            config=collections_pb2.CollectionConfig(name="c", dimension=256)
        )
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gateway.data.Upsert(
            data_pb2.UpsertRequest(
                collection="c",
                items=[
                    data_pb2.Item(id="ok", content=common_pb2.Content(image=media.png(1))),
                    data_pb2.Item(id="bomb", content=common_pb2.Content(image=bomb)),
                ],
            )
        )
    assert err.value.code() == INVALID
    assert (err.value.details() or "").startswith("items[1].content.image: 8000x6000 = 48000000 pixels")


async def test_audio_and_video_over_their_decoded_limits_are_refused(tmp_path: Path) -> None:
    """The limits come from the server's settings; each gateway has its own."""
    ogg, mp4 = media.ogg(440), media.mp4(1, seconds=2.0)  # 2 x 16000 samples; 16 frames
    silent = media.mp4(1, seconds=2.0, with_audio=False)
    async with running_gateway(tmp_path / "audio", max_audio_samples=20_000) as gw:
        details = await refused(gw, common_pb2.Content(audio=media.wav(440)), common_pb2.Content(audio=ogg))
        await gw.embed.Embed(embed_pb2.EmbedRequest(items=[common_pb2.Content(video=silent)]))
    assert details.startswith(
        "items[1].audio: 32000 samples decoded (1.0 s x 16000 Hz x 2 channels) exceeds the limit of 20000"
    )
    assert "(max_audio_samples)" in details
    async with running_gateway(tmp_path / "video", max_video_frames=10) as gw:
        details = await refused(gw, common_pb2.Content(video=mp4))
        await gw.embed.Embed(embed_pb2.EmbedRequest(items=[common_pb2.Content(audio=ogg)]))
    assert details.startswith(
        "items[0].video: 16 frames decoded (declared by the container) exceeds the limit of 10"
    )
    assert "(max_video_frames)" in details


async def test_whole_media_embeds_as_the_local_provider_embeds_it(gateway: Running) -> None:
    large = encoded(picture(3000, 1500, alpha=True), "PNG", compress_level=1)  # 4.5 MP: decoded in bands
    cases = [
        (common_pb2.Content(image=large), Content(Modality.IMAGE, data=large)),
        (common_pb2.Content(image=media.png(2)), Content(Modality.IMAGE, data=media.png(2))),
        (common_pb2.Content(audio=media.mp3(330)), Content(Modality.AUDIO, data=media.mp3(330))),
        (common_pb2.Content(video=media.mp4(3)), Content(Modality.VIDEO, data=media.mp4(3))),
    ]
    reply = await gateway.embed.Embed(
        embed_pb2.EmbedRequest(items=[pb for pb, _ in cases], options=common_pb2.EmbedOptions(dimension=256))
    )
    for result, (_, content) in zip(reply.results, cases, strict=True):
        vector = embed_content(content, 256).embeddings[0].vector
        # the gateway divides each vector by its norm once more: at a norm of 0.99999994 (png(2)
        # under Pillow 13) that moves every element by an ulp, so the expectation does the same
        expected = (vector / float(np.linalg.norm(vector))).astype(np.float32)
        np.testing.assert_array_equal(np.asarray(result.embeddings[0].values, dtype=np.float32), expected)


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    async with running_emulator(EmulatorConfig(seed=3)) as emu:
        yield emu


async def test_a_decompression_bomb_is_never_sent_to_bedrock(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """The Bedrock path sends image bytes as they are; the header check refuses the bomb first."""
    async with running_gateway(
        tmp_path / "data", provider="bedrock", bedrock_endpoint_url=emulator.url, bedrock_max_attempts=1
    ) as gw:
        details = await refused(gw, common_pb2.Content(image=png_claiming(50_000, 50_000)))
        assert details.startswith("items[0].image: 50000x50000 = 2500000000 pixels exceeds the limit")
        assert emulator.state.stats.total() == 0
        fine = await gw.embed.Embed(embed_pb2.EmbedRequest(items=[common_pb2.Content(image=media.png(1))]))
        assert len(fine.results) == 1 and emulator.state.stats.total() == 1


async def test_the_pixel_limit_setting_holds_on_the_bedrock_path(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """`max_image_pixels` from the server's settings reaches the gateway's check (the provider is
    never called) and the Bedrock provider's own re-check: nothing decodes on this path."""
    async with running_gateway(
        tmp_path / "data",
        provider="bedrock",
        bedrock_endpoint_url=emulator.url,
        bedrock_max_attempts=1,
        max_image_pixels=64 * 63,
    ) as gw:
        details = await refused(gw, common_pb2.Content(image=media.png(1)))  # 64x64
        assert details == (
            "items[0].image: 64x64 = 4096 pixels exceeds the limit of 4032 pixels (max_image_pixels, "
            "a decompression bomb guard: refused before decoding)"
        )
        assert emulator.state.stats.total() == 0 and gw.app.gateway.scheduler.provider_calls == 0
        smaller = common_pb2.Content(image=media.png(1, size=63))
        fine = await gw.embed.Embed(embed_pb2.EmbedRequest(items=[smaller]))
        assert len(fine.results) == 1 and emulator.state.stats.total() == 1
