"""A generated mixed catalog (texts, PNG/JPEG images, WAV audio, MP4 video) as Items."""

from __future__ import annotations

from onespace_client.v1 import common_pb2, data_pb2
from tests import media

TEXTS = {
    "t-cats": "cats purr and sleep in the warm afternoon sun",
    "t-dogs": "dogs bark loudly at the mail carrier every morning",
    "t-rain": "heavy rain flooded the narrow streets of the old town",
    "t-code": "the compiler rejected the program because of a type error",
}


def catalog() -> list[data_pb2.Item]:
    items = [
        data_pb2.Item(id=i, content=common_pb2.Content(text=t), metadata={"kind": "text", "lang": "en"})
        for i, t in TEXTS.items()
    ]
    items += [
        data_pb2.Item(
            id="i-png-1", content=common_pb2.Content(image=media.png(1)), metadata={"kind": "photo"}
        ),
        data_pb2.Item(
            id="i-png-2", content=common_pb2.Content(image=media.png(2)), metadata={"kind": "photo"}
        ),
        data_pb2.Item(
            id="i-jpeg-3", content=common_pb2.Content(image=media.jpeg(3)), metadata={"kind": "scan"}
        ),
        data_pb2.Item(
            id="a-440", content=common_pb2.Content(audio=media.wav(440.0, 0.5)), metadata={"kind": "tone"}
        ),
        data_pb2.Item(
            id="a-880", content=common_pb2.Content(audio=media.wav(880.0, 0.5)), metadata={"kind": "tone"}
        ),
        data_pb2.Item(
            id="v-mp4", content=common_pb2.Content(video=media.mp4(4, seconds=1.0)), metadata={"kind": "clip"}
        ),
    ]
    return items


MODALITY = {
    "t": common_pb2.MODALITY_TEXT,
    "i": common_pb2.MODALITY_IMAGE,
    "a": common_pb2.MODALITY_AUDIO,
    "v": common_pb2.MODALITY_VIDEO,
}
