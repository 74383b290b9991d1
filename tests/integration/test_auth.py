"""Bearer tokens, roles and tenants on a real server: who may call what, and which collections a
tenant can see. Every cross-tenant attempt must look exactly like a missing collection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from onespace.auth.tokens import hash_token
from onespace.cli import main as onespace_main
from onespace.rpc.exposure import ExposureError
from onespace_client.v1 import collections_pb2, common_pb2, data_pb2, info_pb2, search_pb2
from tests.harness import Running, running_gateway

DIM = 256
TOKENS = {
    "a-admin": ("acme", "admin"),
    "a-writer": ("acme", "writer"),
    "a-reader": ("acme", "reader"),
    "b-admin": ("bravo", "admin"),
    "d-admin": ("default", "admin"),
}


def token_file(path: Path, tokens: dict[str, tuple[str, str]], extra: str = "") -> Path:
    lines = []
    for token, (tenant, role) in tokens.items():
        lines += ["[[tokens]]", f'sha256 = "{hash_token(token)}"', f'tenant = "{tenant}"', f'role = "{role}"']
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def vec(seed: int) -> common_pb2.Vector:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return common_pb2.Vector(f32=v.tobytes())


@contextlib.asynccontextmanager
async def secured(tmp_path: Path, **overrides: Any) -> AsyncIterator[Running]:
    tokens = token_file(tmp_path / "tokens.toml", TOKENS)
    async with running_gateway(tmp_path / "data", auth_tokens=str(tokens), **overrides) as running:
        yield running


async def create(g: Running, token: str, name: str = "docs") -> None:
    await g.collections.CreateCollection(
        collections_pb2.CreateCollectionRequest(
            config=collections_pb2.CollectionConfig(name=name, dimension=DIM)
        ),
        metadata=bearer(token),
    )


async def code_of(call: Awaitable[Any]) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_requests_without_a_valid_token_are_unauthenticated_and_health_stays_open(
    tmp_path: Path,
) -> None:
    async with secured(tmp_path) as g:
        for metadata in ((), bearer("nope"), (("authorization", "Basic YWxhZGRpbjpvcGVu"),), bearer("")):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await g.info.Info(info_pb2.InfoRequest(), metadata=metadata)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "token" in (caught.value.details() or "")
        health = health_pb2_grpc.HealthStub(g.channel)
        assert (
            await health.Check(health_pb2.HealthCheckRequest())
        ).status == health_pb2.HealthCheckResponse.SERVING
        assert (await g.info.Info(info_pb2.InfoRequest(), metadata=bearer("a-reader"))).provider
        failures = g.app.metrics.registry.get_sample_value
        assert failures("onespace_auth_failures_total", {"reason": "missing_token"}) == 3  # Basic, empty
        assert failures("onespace_auth_failures_total", {"reason": "invalid_token"}) == 1


async def refused_before_reading(stub: reflection_pb2_grpc.ServerReflectionStub) -> grpc.StatusCode:
    """The status of a reflection stream that sends no request: a refusal comes from the headers
    alone. A request written after the server has ended the stream can make the asyncio client
    report INTERNAL "Internal error from Core" instead of the server's status (grpc/grpc#36066);
    that race once failed CI here. A stream the server accepts waits for its request, so it ends
    at the deadline (DEADLINE_EXCEEDED) and the caller's assertion fails."""
    call = stub.ServerReflectionInfo(timeout=10)
    code = await call.code()
    assert isinstance(code, grpc.StatusCode)
    return code


async def test_reflection_needs_a_token_and_follows_its_setting(tmp_path: Path) -> None:
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async with secured(tmp_path) as g:
        stub = reflection_pb2_grpc.ServerReflectionStub(g.channel)
        assert await refused_before_reading(stub) == grpc.StatusCode.UNAUTHENTICATED
        answers = [a async for a in stub.ServerReflectionInfo(iter([request]), metadata=bearer("a-reader"))]
        assert "onespace.v1.SearchService" in {s.name for s in answers[0].list_services_response.service}
    async with running_gateway(tmp_path / "plain", reflection=False) as g:
        stub = reflection_pb2_grpc.ServerReflectionStub(g.channel)
        assert await refused_before_reading(stub) == grpc.StatusCode.UNIMPLEMENTED


async def test_roles(tmp_path: Path) -> None:
    async with secured(tmp_path) as g:
        assert await code_of(create(g, "a-writer")) == grpc.StatusCode.PERMISSION_DENIED
        assert await code_of(create(g, "a-reader")) == grpc.StatusCode.PERMISSION_DENIED
        await create(g, "a-admin")
        upsert = data_pb2.UpsertRequest(collection="docs", items=[data_pb2.Item(id="x", vector=vec(1))])
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await g.data.Upsert(upsert, metadata=bearer("a-reader"))
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "role reader may not call Upsert (needs writer)" in (caught.value.details() or "")
        await g.data.Upsert(upsert, metadata=bearer("a-writer"))
        search = search_pb2.SearchRequest(collection="docs", vector=vec(1), k=1)
        hits = (await g.search.Search(search, metadata=bearer("a-reader"))).hits
        assert [h.id for h in hits] == ["x"]
        deleting = g.collections.DeleteCollection(
            collections_pb2.DeleteCollectionRequest(name="docs"), metadata=bearer("a-writer")
        )
        assert await code_of(deleting) == grpc.StatusCode.PERMISSION_DENIED
        tuning = collections_pb2.UpdateCollectionRequest(name="docs", expansion_search=8)
        assert (
            await code_of(g.collections.UpdateCollection(tuning, metadata=bearer("a-writer")))
            == grpc.StatusCode.PERMISSION_DENIED
        )
        finding = collections_pb2.TuneCollectionRequest(name="docs", queries=[vec(1)], target_recall=0.5)
        assert (
            await code_of(g.collections.TuneCollection(finding, metadata=bearer("a-writer")))
            == grpc.StatusCode.PERMISSION_DENIED
        )
        assert (await g.collections.TuneCollection(finding, metadata=bearer("a-admin"))).reached
        tuned = await g.collections.UpdateCollection(tuning, metadata=bearer("a-admin"))
        assert tuned.collection.config.hnsw.expansion_search == 8
        assert (
            await code_of(
                g.data.Delete(
                    data_pb2.DeleteRequest(collection="docs", ids=["x"]), metadata=bearer("a-reader")
                )
            )
            == grpc.StatusCode.PERMISSION_DENIED
        )
        denied = g.app.metrics.registry.get_sample_value(
            "onespace_tenant_requests_total", {"tenant": "acme", "outcome": "permission_denied"}
        )
        assert denied == 7  # two creates, an upsert, a collection delete, two tunings, an item delete


@dataclass(frozen=True)
class Attempt:
    name: str
    call: Callable[[Running, tuple[tuple[str, str], ...]], Awaitable[Any]]


async def _ingest(g: Running, metadata: tuple[tuple[str, str], ...]) -> Any:
    request = data_pb2.IngestRequest(collection="docs", item=data_pb2.Item(id="evil", vector=vec(9)))
    responses = [r async for r in g.data.Ingest(iter([request]), metadata=metadata)]
    assert len(responses) == 1 and responses[0].WhichOneof("outcome") == "error"
    raise _ItemError(responses[0].error.code, responses[0].error.message)


class _ItemError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


CROSS_TENANT = [
    Attempt(
        "GetCollection",
        lambda g, m: g.collections.GetCollection(
            collections_pb2.GetCollectionRequest(name="docs"), metadata=m
        ),
    ),
    Attempt(
        "CheckpointCollection",
        lambda g, m: g.collections.CheckpointCollection(
            collections_pb2.CheckpointCollectionRequest(name="docs"), metadata=m
        ),
    ),
    Attempt(
        "CompactCollection",
        lambda g, m: g.collections.CompactCollection(
            collections_pb2.CompactCollectionRequest(name="docs"), metadata=m
        ),
    ),
    Attempt(
        "UpdateCollection",
        lambda g, m: g.collections.UpdateCollection(
            collections_pb2.UpdateCollectionRequest(name="docs", expansion_search=8), metadata=m
        ),
    ),
    Attempt(
        "TuneCollection",
        lambda g, m: g.collections.TuneCollection(
            collections_pb2.TuneCollectionRequest(name="docs", queries=[vec(1)], target_recall=0.9),
            metadata=m,
        ),
    ),
    Attempt(
        "DeleteCollection",
        lambda g, m: g.collections.DeleteCollection(
            collections_pb2.DeleteCollectionRequest(name="docs"), metadata=m
        ),
    ),
    Attempt(
        "Upsert",
        lambda g, m: g.data.Upsert(
            data_pb2.UpsertRequest(collection="docs", items=[data_pb2.Item(id="evil", vector=vec(9))]),
            metadata=m,
        ),
    ),
    Attempt("Get", lambda g, m: g.data.Get(data_pb2.GetRequest(collection="docs", ids=["a0"]), metadata=m)),
    Attempt(
        "Delete",
        lambda g, m: g.data.Delete(data_pb2.DeleteRequest(collection="docs", ids=["a0"]), metadata=m),
    ),
    Attempt(
        "Search",
        lambda g, m: g.search.Search(
            search_pb2.SearchRequest(collection="docs", vector=vec(0), k=3), metadata=m
        ),
    ),
    Attempt(
        "Search by id",
        lambda g, m: g.search.Search(search_pb2.SearchRequest(collection="docs", id="a0", k=3), metadata=m),
    ),
    Attempt(
        "SearchBatch",
        lambda g, m: g.search.SearchBatch(
            search_pb2.SearchBatchRequest(
                queries=[search_pb2.SearchRequest(collection="docs", vector=vec(0), k=3)]
            ),
            metadata=m,
        ),
    ),
    Attempt("Ingest", _ingest),
    Attempt(
        "qualified name",
        lambda g, m: g.data.Get(data_pb2.GetRequest(collection="acme~docs", ids=["a0"]), metadata=m),
    ),
]


async def stored(g: Running) -> list[tuple[str, bytes]]:
    got = await g.data.Get(
        data_pb2.GetRequest(
            collection="docs",
            ids=[f"a{i}" for i in range(5)] + ["evil"],
            include_vectors=True,
            vector_format=common_pb2.VECTOR_FORMAT_F32,
        ),
        metadata=bearer("a-admin"),
    )
    return [(i.id, i.vector_f32) for i in got.items if i.id]


async def test_a_tenant_cannot_see_or_touch_another_tenants_collections(tmp_path: Path) -> None:
    async with secured(tmp_path) as g:
        await create(g, "a-admin")
        await g.data.Upsert(
            data_pb2.UpsertRequest(
                collection="docs", items=[data_pb2.Item(id=f"a{i}", vector=vec(i)) for i in range(5)]
            ),
            metadata=bearer("a-admin"),
        )
        before = await stored(g)
        assert len(before) == 5
        for token in ("b-admin", "d-admin"):  # another tenant, and the default tenant
            names = await g.collections.ListCollections(
                collections_pb2.ListCollectionsRequest(), metadata=bearer(token)
            )
            assert list(names.collections) == []
            for attempt in CROSS_TENANT:
                try:
                    await attempt.call(g, bearer(token))
                except grpc.aio.AioRpcError as exc:
                    code, details = exc.code(), exc.details() or ""
                except _ItemError as exc:
                    code, details = (
                        grpc.StatusCode(next(c for c in grpc.StatusCode if c.value[0] == exc.code)),
                        exc.message,
                    )
                else:
                    raise AssertionError(f"{token}: {attempt.name} succeeded on another tenant's collection")
                if attempt.name == "qualified name":  # the caller's own text, echoed
                    assert code == grpc.StatusCode.INVALID_ARGUMENT, (token, attempt.name, code, details)
                else:
                    assert code == grpc.StatusCode.NOT_FOUND, (token, attempt.name, code, details)
                    assert "acme" not in details, (attempt.name, details)
        assert await stored(g) == before
        # the same name is free for another tenant: creating it does not reveal acme's
        await create(g, "b-admin")
        listed = await g.collections.ListCollections(
            collections_pb2.ListCollectionsRequest(), metadata=bearer("b-admin")
        )
        assert [c.config.name for c in listed.collections] == ["docs"]
        hits = await g.search.Search(
            search_pb2.SearchRequest(collection="docs", vector=vec(0), k=3), metadata=bearer("b-admin")
        )
        assert list(hits.hits) == []
        listed = await g.collections.ListCollections(
            collections_pb2.ListCollectionsRequest(), metadata=bearer("a-reader")
        )
        assert [(c.config.name, c.count) for c in listed.collections] == [("docs", 5)]
        assert await stored(g) == before


async def test_default_tenant_keeps_collections_made_before_auth(tmp_path: Path) -> None:
    async with running_gateway(tmp_path / "data") as g:  # auth off
        await g.collections.CreateCollection(
            collections_pb2.CreateCollectionRequest(
                config=collections_pb2.CollectionConfig(name="old", dimension=DIM)
            )
        )
    tokens = token_file(tmp_path / "tokens.toml", TOKENS)
    async with running_gateway(tmp_path / "data", auth_tokens=str(tokens)) as g:
        for token, seen in (("d-admin", ["old"]), ("a-admin", [])):
            listed = await g.collections.ListCollections(
                collections_pb2.ListCollectionsRequest(), metadata=bearer(token)
            )
            assert [c.config.name for c in listed.collections] == seen


async def test_tenant_rate_limit_refuses_with_a_retry_hint_and_spares_other_tenants(tmp_path: Path) -> None:
    async with secured(tmp_path, tenant_rate=0.001, tenant_burst=2) as g:
        request = info_pb2.InfoRequest()
        for _ in range(2):
            await g.info.Info(request, metadata=bearer("a-reader"))
        call = g.info.Info(request, metadata=bearer("a-reader"))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "tenant 'acme' is over its request rate" in (caught.value.details() or "")
        hint = dict(await call.trailing_metadata() or ())
        assert int(hint["grpc-retry-pushback-ms"]) > 1000
        await g.info.Info(request, metadata=bearer("b-admin"))  # bravo has its own bucket
        value = g.app.metrics.registry.get_sample_value
        assert value("onespace_tenant_requests_total", {"tenant": "acme", "outcome": "limited"}) == 1
        assert value("onespace_tenant_requests_total", {"tenant": "bravo", "outcome": "admitted"}) == 1


async def test_tenant_in_flight_limit_counts_open_streams(tmp_path: Path) -> None:
    capped = hash_token("c-writer")
    extra = f'[[tokens]]\nsha256 = "{capped}"\ntenant = "capped"\nrole = "writer"\nmax_in_flight = 1\n'
    tokens = token_file(tmp_path / "tokens.toml", TOKENS, extra)
    async with running_gateway(tmp_path / "data", auth_tokens=str(tokens)) as g:
        stream = g.data.Ingest(metadata=bearer("c-writer"))
        await stream.write(
            data_pb2.IngestRequest(collection="nope", item=data_pb2.Item(id="x", vector=vec(1)))
        )
        first = await stream.read()  # the stream is admitted and open
        assert first.WhichOneof("outcome") == "error"
        assert g.app.metrics.registry.get_sample_value("onespace_tenant_in_flight", {"tenant": "capped"}) == 1
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await g.info.Info(info_pb2.InfoRequest(), metadata=bearer("c-writer"))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_in_flight 1" in (caught.value.details() or "")
        await g.info.Info(info_pb2.InfoRequest(), metadata=bearer("a-reader"))
        await stream.done_writing()
        assert await stream.read() == grpc.aio.EOF
        await g.info.Info(info_pb2.InfoRequest(), metadata=bearer("c-writer"))  # released


async def test_token_file_reload_and_a_broken_file_keeps_the_old_table(tmp_path: Path) -> None:
    async with secured(tmp_path) as g:
        auth = g.app.rpc.auth
        assert auth is not None
        token_file(tmp_path / "tokens.toml", {"new-token": ("acme", "reader")})
        assert auth.reload()
        assert await code_of(g.info.Info(info_pb2.InfoRequest(), metadata=bearer("a-reader"))) == (
            grpc.StatusCode.UNAUTHENTICATED
        )
        await g.info.Info(info_pb2.InfoRequest(), metadata=bearer("new-token"))
        (tmp_path / "tokens.toml").write_text("[[tokens]]\nsha256 = 'short'\n")
        assert not auth.reload()
        await g.info.Info(info_pb2.InfoRequest(), metadata=bearer("new-token"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[[tokens]]\nsha256 = 'abc'\ntenant = 'a'\nrole = 'admin'\n", "sha256 must be 64 hex digits"),
        ("[[tokens]]\nsha256 = '%s'\ntenant = 'Acme Corp'\nrole = 'admin'\n" % ("0" * 64), "tenant"),
        ("[[tokens]]\nsha256 = '%s'\ntenant = 'a'\nrole = 'root'\n" % ("0" * 64), "role must be"),
        ("not toml [", "cannot read the token file"),
    ],
)
def test_a_bad_token_file_stops_the_server_with_a_clear_message(
    tmp_path: Path, content: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(content)
    code = onespace_main(
        [
            "serve",
            "--port",
            "0",
            "--metrics-port",
            "-1",
            "--data-dir",
            str(tmp_path / "d"),
            "--auth-tokens",
            str(path),
        ]
    )
    assert code == 2
    assert message in capsys.readouterr().err


def test_non_loopback_without_tls_and_auth_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = onespace_main(
        ["serve", "--host", "0.0.0.0", "--port", "0", "--metrics-port", "-1", "--data-dir", str(tmp_path)]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "refusing to serve on 0.0.0.0" in err and "--insecure" in err


async def test_insecure_allows_a_non_loopback_bind(tmp_path: Path) -> None:
    with pytest.raises(ExposureError):
        async with running_gateway(tmp_path / "x", host="0.0.0.0"):
            pass
    async with running_gateway(tmp_path / "data", host="0.0.0.0", insecure=True) as g:
        assert g.app.metrics_server is not None
        assert g.app.metrics_server.server_address[0] == "127.0.0.1"  # /metrics stays on loopback


def test_token_command_prints_a_token_and_its_entry(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert onespace_main(["token", "--tenant", "acme", "--role", "writer"]) == 0
    out = capsys.readouterr()
    token = out.out.strip()
    assert token.startswith("os_") and len(token) > 40
    assert hash_token(token) in out.err and token not in out.err
    path = tmp_path / "tokens.toml"
    path.write_text(out.err)
    from onespace.auth.tokens import TokenTable

    entry = TokenTable.load(path).find(token)
    assert entry is not None and (entry.principal.tenant, entry.principal.role.name) == ("acme", "WRITER")


async def test_the_client_and_the_cli_send_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from onespace_client import AsyncClient, OnespaceClientError
    from onespace_client.cli import main as client_cli

    async with secured(tmp_path) as g:
        async with AsyncClient(g.target, token="a-admin") as client:
            await client.create_collection("docs", dimension=DIM)
        async with AsyncClient(g.target) as client:
            with pytest.raises(OnespaceClientError, match="UNAUTHENTICATED"):
                await client.list_collections()
        monkeypatch.setenv("ONESPACE_TOKEN", "a-reader")
        code = await asyncio.to_thread(client_cli, ["collections", "list", "--target", g.target, "--json"])
        assert code == 0 and '"docs"' in capsys.readouterr().out


async def test_a_non_loopback_bind_with_tls_and_tokens_needs_no_insecure(tmp_path: Path) -> None:
    from tests.pki import Ca  # a throwaway CA

    cert, key = Ca.new("test CA").issue("onespace", server=True)
    (tmp_path / "server.pem").write_bytes(cert)
    (tmp_path / "server.key").write_bytes(key)
    tokens = token_file(tmp_path / "tokens.toml", TOKENS)
    tls = {"tls_cert": str(tmp_path / "server.pem"), "tls_key": str(tmp_path / "server.key")}
    with pytest.raises(ExposureError, match="without --auth-tokens"):  # TLS alone is not enough
        async with running_gateway(tmp_path / "x", host="0.0.0.0", **tls):
            pass
    async with running_gateway(tmp_path / "data", host="0.0.0.0", auth_tokens=str(tokens), **tls) as g:
        assert g.app.rpc.certificates is not None
