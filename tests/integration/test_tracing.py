"""OpenTelemetry tracing against a real gateway: spans per RPC and per stage, trace context from
the caller, the span budget of long streams, status mapping, OTLP export to a real collector,
and nothing at all when tracing is off."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from onespace import cli
from onespace.errors import Internal
from onespace.models import LOCAL_MODEL
from onespace.otel import OtelTracer
from onespace.tracing import TracingError, build_tracer
from onespace_client.v1 import collections_pb2, common_pb2, data_pb2, embed_pb2, info_pb2, search_pb2
from tests.harness import Running, running_gateway
from tests.harness import test_settings as settings_for
from tests.scripted import ScriptedProvider

EMBED = "onespace.v1.EmbedService/Embed"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


class Recorder(InMemorySpanExporter):
    """Finished spans, and a way to wait for one (spans end on the server's event loop, after the
    client may already hold the response)."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = super().export(spans)
        self.changed.set()
        return result

    async def wait_for(self, name: str, count: int = 1) -> list[ReadableSpan]:
        async with asyncio.timeout(10):
            while True:
                found = [s for s in self.get_finished_spans() if s.name == name]
                if len(found) >= count:
                    return found
                self.changed.clear()
                await self.changed.wait()

    def children(self, parent: ReadableSpan, name: str | None = None) -> list[ReadableSpan]:
        assert parent.context is not None
        return [
            s
            for s in self.get_finished_spans()
            if s.parent is not None
            and s.parent.span_id == parent.context.span_id
            and (name is None or s.name == name)
        ]


@contextlib.asynccontextmanager
async def traced_gateway(
    tmp_path: Path, provider: ScriptedProvider | None = None, **overrides: Any
) -> AsyncIterator[tuple[Running, Recorder]]:
    recorder = Recorder()
    settings = settings_for(tmp_path / "data", tracing="console", **overrides)
    tracer = OtelTracer.from_settings(settings, exporter=recorder)
    async with running_gateway(tmp_path / "data", provider, tracer=tracer, **overrides) as gw:
        yield gw, recorder


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def within(child: ReadableSpan, parent: ReadableSpan) -> bool:
    assert child.start_time is not None and child.end_time is not None
    assert parent.start_time is not None and parent.end_time is not None
    return parent.start_time <= child.start_time <= child.end_time <= parent.end_time


async def test_an_embed_rpc_is_a_server_span_with_its_queue_wait_and_provider_call(tmp_path: Path) -> None:
    async with traced_gateway(tmp_path) as (gw, recorder):
        await gw.embed.Embed(embed_pb2.EmbedRequest(items=[common_pb2.Content(text="hello")]))
        (rpc,) = await recorder.wait_for(EMBED)
    assert rpc.kind is SpanKind.SERVER and rpc.parent is None
    assert attrs(rpc) == {
        "rpc.system": "grpc",
        "rpc.service": "onespace.v1.EmbedService",
        "rpc.method": "Embed",
        "rpc.grpc.status_code": 0,
    }
    assert rpc.status.status_code is StatusCode.UNSET
    assert rpc.resource.attributes["service.name"] == "onespace"
    (queued,) = recorder.children(rpc, "onespace.queue_wait")
    (call,) = recorder.children(rpc, "onespace.provider_call")
    assert within(queued, rpc) and within(call, rpc)
    assert queued.end_time is not None and call.start_time is not None
    assert queued.end_time <= call.start_time + 1_000_000  # the call starts as the wait ends (1 ms slack)
    assert attrs(call) == {
        "onespace.model": LOCAL_MODEL.id,
        "onespace.modality": "text",
        "onespace.dimension": LOCAL_MODEL.default_dimension,
        "onespace.provider": "local",
        "onespace.batch_size": 1,
        "onespace.joined": False,
    }


async def test_the_callers_trace_context_is_continued_and_its_sampling_decision_kept(
    tmp_path: Path,
) -> None:
    request = embed_pb2.EmbedRequest(items=[common_pb2.Content(text="traced")])
    async with traced_gateway(tmp_path) as (gw, recorder):
        await gw.embed.Embed(request, metadata=(("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01"),))
        (rpc,) = await recorder.wait_for(EMBED)
        assert rpc.context is not None and rpc.parent is not None
        assert rpc.context.trace_id == int(TRACE_ID, 16) and rpc.parent.span_id == int(PARENT_ID, 16)
        assert rpc.parent.is_remote
        assert all(
            s.context is not None and s.context.trace_id == int(TRACE_ID, 16) for s in recorder.children(rpc)
        )
        # a caller that did not sample its trace: nothing is recorded for the RPC or below it
        recorder.clear()
        other = f"00-{'1' * 32}-{PARENT_ID}-00"
        await gw.embed.Embed(
            embed_pb2.EmbedRequest(items=[common_pb2.Content(text="not sampled")]),
            metadata=(("traceparent", other),),
        )
        await gw.embed.Embed(request)  # a sampled RPC after it: the recorder's next span
        (after,) = await recorder.wait_for(EMBED)
        assert after.context is not None and after.context.trace_id != int("1" * 32, 16)
        assert {s.context.trace_id for s in recorder.get_finished_spans() if s.context} == {
            after.context.trace_id
        }


async def test_identical_concurrent_embeds_each_get_the_shared_provider_call(tmp_path: Path) -> None:
    provider = ScriptedProvider(gate=asyncio.Event())
    async with traced_gateway(tmp_path, provider, cache_bytes=0) as (gw, recorder):
        request = embed_pb2.EmbedRequest(items=[common_pb2.Content(text="same")])
        first = asyncio.ensure_future(gw.embed.Embed(request))
        await provider.started.wait()
        second = asyncio.ensure_future(gw.embed.Embed(request))
        joins = gw.app.metrics.dedup_joins
        async with asyncio.timeout(10):
            while joins._value.get() < 1:  # the second caller joined the call in flight
                await asyncio.sleep(0)
        provider.gate.set()  # type: ignore[union-attr]
        await asyncio.gather(first, second)
        rpcs = await recorder.wait_for(EMBED, 2)
    calls = [c for rpc in rpcs for c in recorder.children(rpc, "onespace.provider_call")]
    assert len(calls) == 2 and provider.calls == [1]
    assert sorted(attrs(c)["onespace.joined"] for c in calls) == [False, True]
    assert len({(c.start_time, c.end_time) for c in calls}) == 1  # one call, seen by both callers


async def test_a_cache_hit_is_an_event_not_a_provider_call(tmp_path: Path) -> None:
    request = embed_pb2.EmbedRequest(items=[common_pb2.Content(text="cache me")])
    async with traced_gateway(tmp_path) as (gw, recorder):
        await gw.embed.Embed(request)
        await gw.embed.Embed(request)
        rpcs = await recorder.wait_for(EMBED, 2)
    second = max(rpcs, key=lambda s: s.start_time or 0)
    assert recorder.children(second) == []
    assert [e.name for e in second.events] == ["onespace.cache_hit"]


async def test_writes_and_searches_record_their_waits_and_the_shared_commit_and_index_call(
    tmp_path: Path,
) -> None:
    async with traced_gateway(tmp_path) as (gw, recorder):
        await gw.collections.CreateCollection(
            collections_pb2.CreateCollectionRequest(config=collections_pb2.CollectionConfig(name="docs"))
        )
        await gw.data.Upsert(
            data_pb2.UpsertRequest(
                collection="docs",
                items=[
                    data_pb2.Item(id=f"d{n}", content=common_pb2.Content(text=f"doc {n}")) for n in range(5)
                ],
            )
        )
        await gw.search.Search(search_pb2.SearchRequest(collection="docs", id="d1", k=3))
        queries = [search_pb2.SearchRequest(collection="docs", id=f"d{n}", k=2) for n in range(3)]
        await gw.search.SearchBatch(search_pb2.SearchBatchRequest(queries=queries))
        (search,) = await recorder.wait_for("onespace.v1.SearchService/Search")
        (batch,) = await recorder.wait_for("onespace.v1.SearchService/SearchBatch")
    (index,) = recorder.children(search, "onespace.index_search")
    assert within(index, search) and len(recorder.children(search, "onespace.search_wait")) == 1
    assert attrs(index) == {
        "onespace.collection": "docs",
        "onespace.k": 3,
        "onespace.dimension": LOCAL_MODEL.default_dimension,
        "onespace.batch_size": 1,
    }
    batched = recorder.children(batch, "onespace.index_search")
    assert len(batched) == 3 and {attrs(s)["onespace.batch_size"] for s in batched} == {3}
    (upsert,) = [s for s in recorder.get_finished_spans() if s.name == "onespace.v1.DataService/Upsert"]
    assert len(recorder.children(upsert, "onespace.provider_call")) == 5  # its five texts embedded
    (wait,) = recorder.children(upsert, "onespace.commit_wait")
    (commit,) = recorder.children(upsert, "onespace.commit")
    assert within(wait, upsert) and within(commit, upsert)
    assert attrs(commit) == {"onespace.collection": "docs", "onespace.group_items": 5}


@pytest.mark.parametrize(
    ("provider_error", "code", "status"),
    [
        (None, grpc.StatusCode.NOT_FOUND, StatusCode.UNSET),
        (Internal("boom"), grpc.StatusCode.INTERNAL, StatusCode.ERROR),
    ],
)
async def test_a_failed_rpc_carries_its_code_and_only_server_faults_are_errors(
    tmp_path: Path, provider_error: Internal | None, code: grpc.StatusCode, status: StatusCode
) -> None:
    provider = ScriptedProvider(fail_with=provider_error)
    options = common_pb2.EmbedOptions(model="no-such-model" if provider_error is None else "")
    async with traced_gateway(tmp_path, provider) as (gw, recorder):
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await gw.embed.Embed(
                embed_pb2.EmbedRequest(items=[common_pb2.Content(text="x")], options=options)
            )
        assert failed.value.code() is code
        (rpc,) = await recorder.wait_for(EMBED)
    assert attrs(rpc)["rpc.grpc.status_code"] == code.value[0]
    assert rpc.status.status_code is status
    if status is StatusCode.ERROR:
        assert rpc.status.description is not None and "boom" in rpc.status.description


async def test_a_long_stream_keeps_to_its_span_budget_and_counts_the_rest(tmp_path: Path) -> None:
    async with traced_gateway(tmp_path, trace_max_spans_per_rpc=4) as (gw, recorder):

        async def requests() -> AsyncIterator[embed_pb2.EmbedStreamRequest]:
            for n in range(5):
                yield embed_pb2.EmbedStreamRequest(
                    request_id=str(n), content=common_pb2.Content(text=f"t{n}")
                )

        answers = [r async for r in gw.embed.EmbedStream(requests())]
        (stream,) = await recorder.wait_for("onespace.v1.EmbedService/EmbedStream")
    assert len(answers) == 5
    assert len(recorder.children(stream)) == 4  # of 5 items x (queue wait, provider call)
    assert attrs(stream)["onespace.spans_dropped"] == 6


async def test_otlp_export_reaches_a_collector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with otlp_collector() as (port, received):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
        async with running_gateway(tmp_path / "data", tracing="otlp") as gw:
            await gw.embed.Embed(embed_pb2.EmbedRequest(items=[common_pb2.Content(text="exported")]))
        # stopping the gateway flushed the batch processor: the collector already has the spans
    spans = {
        span.name: resource.resource
        for request in received
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    }
    assert {EMBED, "onespace.queue_wait", "onespace.provider_call"} <= spans.keys()
    names = {a.key: a.value.string_value for a in spans[EMBED].attributes}
    assert names["service.name"] == "onespace" and names["service.version"]


@contextlib.contextmanager
def otlp_collector() -> Iterator[tuple[int, list[trace_service_pb2.ExportTraceServiceRequest]]]:
    """A real OTLP/gRPC trace endpoint on loopback, in its own threads (the exporter blocks)."""
    received: list[trace_service_pb2.ExportTraceServiceRequest] = []
    lock = threading.Lock()

    class Collector(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(
            self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
        ) -> trace_service_pb2.ExportTraceServiceResponse:
            with lock:
                received.append(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Collector(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port, received
    finally:
        server.stop(None)


def test_tracing_settings_out_of_range_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TracingError, match=r"--trace-sample-ratio 1\.5 is outside 0\.\.1"):
        build_tracer(settings_for(tmp_path, tracing="otlp", trace_sample_ratio=1.5))
    assert build_tracer(settings_for(tmp_path)) is None  # off by default


def test_tracing_without_the_extra_is_a_clear_startup_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if the extra were not installed
    monkeypatch.delitem(sys.modules, "onespace.otel", raising=False)
    code = cli.main(
        ["serve", "--tracing", "otlp", "--port", "0", "--metrics-port", "-1", "--data-dir", str(tmp_path)]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "--tracing otlp needs OpenTelemetry" in err and "pip install 'onespace[otel]'" in err


def test_with_tracing_off_no_opentelemetry_code_is_loaded(tmp_path: Path) -> None:
    """Off means off: a gateway serving RPCs never imports OpenTelemetry (a fresh interpreter)."""
    script = f"""
import asyncio, sys
from pathlib import Path
from tests.harness import running_gateway
from onespace_client.v1 import common_pb2, embed_pb2

async def main() -> None:
    async with running_gateway(Path({str(tmp_path)!r})) as gw:
        assert gw.app.gateway.tracer is None
        await gw.embed.Embed(embed_pb2.EmbedRequest(items=[common_pb2.Content(text="x")]))

asyncio.run(main())
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry") or m == "onespace.otel")
print(loaded)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=_root()
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def _root() -> Path:
    return Path(__file__).resolve().parents[2]


async def test_log_lines_of_a_traced_rpc_carry_its_trace_id(tmp_path: Path, json_log: io.StringIO) -> None:
    async with traced_gateway(tmp_path, access_log_sample=1.0) as (gw, recorder):
        traceparent = (("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01"),)
        await gw.info.Info(info_pb2.InfoRequest(), metadata=traceparent)
        await recorder.wait_for("onespace.v1.InfoService/Info")
    (line,) = [json.loads(text) for text in json_log.getvalue().splitlines()]
    assert line["message"].startswith("Info OK") and line["trace_id"] == TRACE_ID
