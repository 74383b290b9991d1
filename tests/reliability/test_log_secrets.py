"""A DEBUG-level run of `onespace serve` against the Bedrock emulator, with tokens on: its whole
log must hold no bearer token, no AWS credential, no Authorization header and no payload byte."""

from __future__ import annotations

import base64
from pathlib import Path

import grpc
import pytest

from onespace.auth.tokens import hash_token
from onespace.emulator import EmulatorConfig, running_emulator
from onespace_client.v1 import (
    collections_pb2,
    collections_pb2_grpc,
    common_pb2,
    data_pb2,
    data_pb2_grpc,
    embed_pb2,
    embed_pb2_grpc,
    search_pb2,
    search_pb2_grpc,
)
from tests import media
from tests.aws import AWS_VARIABLES, dummy_aws_environment
from tests.reliability.serve import Server

KEY_ID = "AKIAZZZZSECRETKEYID1"
SECRET = "s3cr3t/Access+Key/NeverLogged0123456789ab"
TOKEN = "os_tokenThatMustNeverAppearInALogLine_42"
TEXT = "confidential-marker-7f3a quarterly figures"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    env = dummy_aws_environment(str(tmp_path / "aws-config"), str(tmp_path / "aws-credentials"))
    env.update(AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


@pytest.mark.slow
async def test_debug_log_holds_no_secret_and_no_payload(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(f'[[tokens]]\nsha256 = "{hash_token(TOKEN)}"\ntenant = "acme"\nrole = "admin"\n')
    image = media.png(5, size=96)
    metadata = (("authorization", f"Bearer {TOKEN}"),)
    async with running_emulator(EmulatorConfig(seed=1)) as emulator:
        server = Server(
            tmp_path / "data",
            "--log-level", "DEBUG",
            "--provider", "bedrock",
            "--bedrock-endpoint-url", emulator.url,
            "--auth-tokens", str(tokens),
        )  # fmt: skip
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                embed = embed_pb2_grpc.EmbedServiceStub(channel)
                items = [common_pb2.Content(text=TEXT), common_pb2.Content(image=image)]
                response = await embed.Embed(embed_pb2.EmbedRequest(items=items), metadata=metadata)
                assert len(response.results) == 2
                collections = collections_pb2_grpc.CollectionServiceStub(channel)
                await collections.CreateCollection(
                    collections_pb2.CreateCollectionRequest(
                        config=collections_pb2.CollectionConfig(name="c")
                    ),
                    metadata=metadata,
                )
                data = data_pb2_grpc.DataServiceStub(channel)
                await data.Upsert(
                    data_pb2.UpsertRequest(
                        collection="c", items=[data_pb2.Item(id="doc", content=common_pb2.Content(text=TEXT))]
                    ),
                    metadata=metadata,
                )
                search = search_pb2_grpc.SearchServiceStub(channel)
                await search.Search(
                    search_pb2.SearchRequest(collection="c", content=common_pb2.Content(text=TEXT)),
                    metadata=metadata,
                )
                with pytest.raises(grpc.aio.AioRpcError):  # a wrong token is logged nowhere either
                    await embed.Embed(
                        embed_pb2.EmbedRequest(items=items), metadata=(("authorization", "Bearer x" + TOKEN),)
                    )
        finally:
            assert server.terminate() == 0
    log = server.output
    assert "DEBUG" in log  # the run really was at DEBUG
    secrets = {
        "bearer token": TOKEN,
        "access key id": KEY_ID,
        "secret key": SECRET,
        "text payload": "confidential-marker-7f3a",
        "image payload (base64)": base64.b64encode(image).decode()[40:80],
        "image payload (bytes repr)": repr(image[16:40])[2:-1],
    }
    for what, secret in secrets.items():
        assert secret not in log, f"the log holds the {what}"
    assert "authorization" not in log.lower().replace("authorization: bearer <token>", "")
