"""The gateway's operations, shared by unary and streaming RPCs (TEI's `*_inner` functions).

Servicers convert protobuf to these domain calls and back; everything here speaks domain types
and raises `onespace.errors`. Blocking index work runs in threads; embedding goes through the
scheduler; searches go through the batcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Awaitable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import NoReturn, TypeVar

import numpy as np
import numpy.typing as npt

from onespace import content as contents
from onespace.auth import tenancy
from onespace.budget import response_too_large
from onespace.config import Settings
from onespace.content import Content, MediaLimits, Purpose
from onespace.engine import Admission, EmbedScheduler, SearchBatcher, WriteBatcher
from onespace.engine.maintenance import Maintainer
from onespace.engine.recall import RecallSampler
from onespace.engine.scheduler import EmbedOutcome, GivenUp
from onespace.engine.search import IndexCall
from onespace.engine.tuner import TuneResult, check_queries, tune_search
from onespace.engine.writes import GroupCommit
from onespace.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OnespaceError,
    Unavailable,
)
from onespace.index import (
    CollectionConfig,
    CollectionStats,
    Filter,
    Hit,
    Query,
    Record,
    StoredItem,
    Tuning,
)
from onespace.index.backend import Backend, CollectionHandle
from onespace.index.validate import CheckedQuery
from onespace.index.writes import DeleteOp, PreparedRecord, UpsertOp, WriteOp
from onespace.metrics import Metrics
from onespace.models import ModelSpec
from onespace.providers.base import EmbedInput, Provider, ProviderEmbedding, ProviderResult, Vector
from onespace.tracing import Tracer

__all__ = ["EmbedOptions", "Embedded", "Gateway", "Health", "ItemIn", "SearchIn", "Timings", "gather_all"]

T = TypeVar("T")
E = TypeVar("E", bound=OnespaceError)


@dataclass(frozen=True, slots=True)
class EmbedOptions:
    model: str = ""
    dimension: int | None = None
    purpose: Purpose | None = None
    normalize: bool = True


@dataclass(slots=True)
class Timings:
    queue: float = 0.0
    provider: float = 0.0
    index: float = 0.0
    total: float = 0.0

    def add(self, outcome: EmbedOutcome) -> None:
        self.queue = max(self.queue, outcome.queue_seconds)
        self.provider = max(self.provider, outcome.provider_seconds)


@dataclass(frozen=True, slots=True)
class Embedded:
    """One input's result as served: vectors normalised if asked, and how it was produced."""

    result: ProviderResult
    cached: bool


@dataclass(frozen=True, slots=True)
class ItemIn:
    id: str
    content: Content | None = None
    vector: Vector | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SearchIn:
    collection: str
    content: Content | None = None
    vector: Vector | None = None
    id: str | None = None
    k: int = 10
    dimension: int | None = None
    filter: Filter = field(default_factory=Filter)
    purpose: Purpose | None = None
    include_vectors: bool = False


class Gateway:
    def __init__(
        self,
        settings: Settings,
        provider: Provider,
        store: Backend,
        metrics: Metrics,
        tracer: Tracer | None = None,
    ) -> None:
        self.settings = settings
        self.tracer = tracer  # None: tracing off, and the stages below record nothing
        self.media_limits = MediaLimits.of(settings)
        self.provider = provider
        self.store = store
        self.metrics = metrics
        self.scheduler = EmbedScheduler(provider, settings, metrics)
        self.recall = RecallSampler(metrics, budget=settings.recall_sample_budget)
        self.searches = SearchBatcher(
            metrics,
            max_batch=settings.search_max_batch,
            max_wait_seconds=settings.search_max_wait_ms / 1000,
            threads=settings.search_thread_count,
            inline_seconds=settings.search_inline_ms / 1000,
            recall=self.recall if self.recall.enabled else None,
        )
        self.writes = WriteBatcher(
            metrics,
            policy=settings.fsync,
            max_wait_seconds=settings.commit_max_wait_ms / 1000,
            max_items=settings.commit_max_items,
            index_nice=settings.index_nice,
        )
        metrics.watch_cache(self.scheduler.cache)
        metrics.queue_capacity.set(settings.queue_capacity)
        self.maintainer = Maintainer(
            store,
            metrics,
            interval=settings.maintenance_interval_seconds,
            max_age=settings.checkpoint_interval_seconds,
            changes=settings.checkpoint_changes,
        )
        self.draining = asyncio.Event()  # set at shutdown: streams stop taking new items

    async def start(self) -> None:
        await self.provider.start()
        await asyncio.to_thread(self.store.open)
        for collection in self.store.list():
            self.maintainer.observe(collection)
        await self.scheduler.start()
        self.maintainer.start()

    async def health(self) -> Health:
        """What stops each part from serving now (None: nothing)."""
        return Health(await self.provider.check(), await asyncio.to_thread(self.store.check))

    def refuse_if_draining(self) -> None:
        if self.draining.is_set():
            raise Unavailable(
                "the server is shutting down; retry on another replica", retry_after_seconds=1.0
            )

    async def stop(self) -> None:
        await self.maintainer.stop()
        await self.recall.close()
        await self.scheduler.stop(self.settings.grace_seconds)
        await self.writes.close()
        await asyncio.to_thread(self.store.close)  # every acked write is already on disk
        await self.provider.close()

    # --- operations -------------------------------------------------------------------------------
    def collection(self, name: str, field: str = "name") -> CollectionHandle:
        """The calling tenant's collection `name` (another tenant's is NOT_FOUND, as is none)."""
        try:
            return self.store.get(tenancy.qualify(name, field))
        except NotFound:
            raise NotFound(f"collection {name!r} not found") from None

    def collections(self) -> Sequence[CollectionHandle]:
        """The calling tenant's collections."""
        tenant = tenancy.current_tenant()
        return [c for c in self.store.list() if tenancy.owned_by(c.name, tenant)]

    async def checkpoint(self, name: str) -> tuple[CollectionHandle, CollectionStats]:
        collection = self.collection(name)
        await asyncio.to_thread(self.maintainer.checkpoint, collection)
        return collection, await self._observed(collection)

    async def compact(self, name: str) -> tuple[CollectionHandle, CollectionStats]:
        collection = self.collection(name)
        if await asyncio.to_thread(self.store.compact, collection, force=True):
            self.metrics.compactions.labels(collection.name).inc()
            await asyncio.to_thread(self.maintainer.checkpoint, collection)
        return collection, await self._observed(collection)

    async def tune(self, name: str, tuning: Tuning) -> tuple[CollectionHandle, CollectionStats]:
        """Change a collection's search-time settings and unindexed bound (`index.Tuning`)."""
        collection = self.collection(name)
        await asyncio.to_thread(self.store.tune, collection, tuning)
        return collection, await self._observed(collection)

    async def tune_search(
        self,
        name: str,
        vectors: Sequence[npt.NDArray[np.float32]],
        *,
        k: int,
        target: float,
        apply: bool,
        deadline: float,
    ) -> tuple[CollectionHandle, CollectionStats, TuneResult]:
        """The cheapest search settings reaching `target` recall on `vectors` as queries for `k`
        hits, or without vectors on the live queries the recall sampler last drew (engine/tuner.py);
        with `apply`, the collection keeps them (as `tune` would set them)."""
        collection = self.collection(name)
        sampled = self.recall.recent(collection.name)
        if vectors:
            self._check_k(k)
        if not vectors and not sampled:
            raise FailedPrecondition(
                f"no queries given, and none of collection {name!r}'s live searches was sampled "
                "(that needs --recall-sample-budget above 0, and searches served since the start)"
            )

        def tune() -> TuneResult:
            queries = check_queries(collection, vectors, k) if vectors else sampled
            return tune_search(
                collection,
                queries,
                target=target,
                threads=self.settings.search_thread_count,
                deadline=deadline,
            )

        result = await asyncio.to_thread(tune)
        if apply and result.tuning is not None:
            await asyncio.to_thread(self.store.tune, collection, result.tuning)
        return collection, await self._observed(collection), result

    async def _observed(self, collection: CollectionHandle) -> CollectionStats:
        """Stats, also published as the collection's gauges."""
        return await asyncio.to_thread(self.maintainer.observe, collection)

    async def stats(self, collection: CollectionHandle) -> CollectionStats:
        return await asyncio.to_thread(self.store.stats, collection)

    # --- models --------------------------------------------------------------------------------
    def model(self, model_id: str = "") -> ModelSpec:
        if not model_id:
            model_id = self.settings.model or self.provider.default_model.id
        return self.provider.model(model_id)

    def resolve(self, options: EmbedOptions) -> tuple[ModelSpec, int]:
        spec = self.model(options.model)
        dimension = spec.default_dimension if options.dimension is None else options.dimension
        spec.check_dimension(dimension)
        return spec, dimension

    # --- embedding -----------------------------------------------------------------------------
    def prepare(
        self, content: Content, spec: ModelSpec, dimension: int, purpose: Purpose, field: str
    ) -> EmbedInput:
        """Check content against the model and the media limits (pure, fast) and build the provider
        input."""
        checked = contents.check(content, spec, field, self.media_limits)
        return EmbedInput(checked, spec.id, dimension, purpose)

    async def embed_input(
        self, item: EmbedInput, *, deadline: float, admission: Admission, normalize: bool = True
    ) -> tuple[Embedded, EmbedOutcome]:
        outcome = await self.scheduler.embed(item, deadline=deadline, admission=admission)
        return self._served(item, outcome, normalize), outcome

    async def embed_inputs(
        self, items: Sequence[EmbedInput], normalize: Sequence[bool], *, deadline: float, admission: Admission
    ) -> AsyncGenerator[list[tuple[int, tuple[Embedded, EmbedOutcome] | OnespaceError]], None]:
        """`embed_input` for each of a stream's group of inputs, with one wait for them all
        (`EmbedScheduler.embed_as_done`); each gets its result or its error (by its position in
        `items`) as soon as it is known, in lists of those known together."""
        async with contextlib.aclosing(
            self.scheduler.embed_as_done(items, deadline=deadline, admission=admission)
        ) as waves:
            async for wave in waves:
                yield [
                    (i, o if isinstance(o, OnespaceError) else (self._served(items[i], o, normalize[i]), o))
                    for i, o in wave
                ]

    async def _embed_all(
        self,
        items: Sequence[EmbedInput],
        fields: Sequence[str],
        normalize: bool,
        *,
        deadline: float,
        admission: Admission,
    ) -> list[tuple[Embedded, EmbedOutcome]]:
        """A unary request's inputs, waited for together (`EmbedScheduler.embed_many`, no task per
        input); the request fails at its first failed input, with that input's error naming
        its field (`fields[i]`)."""
        if len(items) == 1:  # the common request: one wait, as `embed_input`
            served = self.embed_input(items[0], deadline=deadline, admission=admission, normalize=normalize)
            return [await _named(served, fields[0])]
        outcomes = await self.scheduler.embed_many(items, deadline=deadline, admission=admission)
        for outcome, where in zip(outcomes, fields, strict=True):
            if isinstance(outcome, OnespaceError) and not isinstance(outcome, GivenUp):
                _raise_named(outcome, where)
        return [
            (self._served(x, o, normalize), o)
            for x, o in zip(items, outcomes, strict=True)
            if not isinstance(o, OnespaceError)
        ]

    def _served(self, item: EmbedInput, outcome: EmbedOutcome, normalize: bool) -> Embedded:
        if self.tracer is not None:
            _trace_embed(self.tracer, self.provider.name, item, outcome)
        result = _normalized(outcome.result) if normalize else outcome.result
        return Embedded(result, outcome.cached)

    async def embed(
        self, items: Sequence[Content], options: EmbedOptions, *, deadline: float, admission: Admission
    ) -> tuple[list[Embedded], ModelSpec, int, Timings]:
        """Embed every item (checked first, so one bad item costs no provider call); item order kept."""
        started = time.monotonic()
        spec, dimension = self.resolve(options)
        purpose = options.purpose or Purpose.GENERIC_INDEX
        inputs = [self.prepare(c, spec, dimension, purpose, f"items[{i}]") for i, c in enumerate(items)]
        fields = [f"items[{i}]" for i in range(len(inputs))]
        done = await self._embed_all(
            inputs, fields, options.normalize, deadline=deadline, admission=admission
        )
        timings = Timings()
        for _, outcome in done:
            timings.add(outcome)
        timings.total = time.monotonic() - started
        return [e for e, _ in done], spec, dimension, timings

    # --- collections ---------------------------------------------------------------------------
    async def create_collection(self, config: CollectionConfig) -> CollectionHandle:
        spec = self.model(config.model)
        dimension = config.dimension or spec.default_dimension
        if dimension not in spec.dimensions:
            offered = ", ".join(map(str, spec.dimensions))
            raise InvalidArgument(
                "config.dimension", f"{dimension} is not offered by model {spec.id} (offers {offered})"
            )
        name = config.name
        stored = tenancy.qualify(name, "config.name")
        config = replace(config, name=stored, model=spec.id, dimension=dimension).validated()
        try:
            collection = await asyncio.to_thread(self.store.create, config)
        except AlreadyExists:
            raise AlreadyExists(f"collection {name!r} already exists") from None
        self.metrics.index_items.labels(stored).set(0)
        return collection

    async def delete_collection(self, name: str) -> None:
        name = self.collection(name).name
        try:
            await asyncio.to_thread(self.store.delete, name)
        except NotFound:  # deleted meanwhile
            raise NotFound(f"collection {tenancy.local_name(name)!r} not found") from None
        self.metrics.forget_collection(name)
        self.recall.forget(name)

    # --- data ----------------------------------------------------------------------------------
    async def upsert(
        self,
        name: str,
        items: Sequence[ItemIn],
        *,
        deadline: float,
        admission: Admission,
        field: str = "items",
    ) -> Timings:
        started = time.monotonic()
        collection = self.collection(name, "collection")
        config = collection.config
        spec = self.model(config.model)
        contents: list[EmbedInput] = []
        named: list[str] = []  # each content's field, for errors found while embedding it
        for i, item in enumerate(items):
            where = f"{field}[{i}]" if len(items) > 1 or field == "items" else field
            if item.content is not None:
                named.append(f"{where}.content")
                contents.append(
                    self.prepare(
                        item.content, spec, config.dimension, Purpose.GENERIC_INDEX, f"{where}.content"
                    )
                )
            elif item.vector is None:
                raise InvalidArgument(f"{where}.source", "set either content or vector")
        embedded = iter(await self._embed_all(contents, named, True, deadline=deadline, admission=admission))
        timings = Timings()
        records = []
        for item in items:
            if item.content is not None:
                done, outcome = next(embedded)
                timings.add(outcome)
                vector = done.result.embeddings[0].vector
            else:
                assert item.vector is not None
                vector = item.vector
            modality = item.content.modality if item.content is not None else None
            records.append(Record(item.id, vector, modality, dict(item.metadata)))
        op = collection.prepare_upsert(records, field=field)
        index_start = time.monotonic()
        await self._commit(collection, op, deadline)
        timings.index = time.monotonic() - index_start
        timings.total = time.monotonic() - started
        return timings

    async def upsert_each(
        self, name: str, items: Sequence[ItemIn], *, deadline: float, field: str = "item"
    ) -> AsyncGenerator[list[tuple[int, Timings | OnespaceError]], None]:
        """Store a stream's group of items, each checked and embedded on its own, and hand each
        item's outcome back (by its position in `items`) once it is stored or has failed, in lists
        of those settled together: each set of contents whose embeddings came back together
        (`embed_inputs`: one wait, no task per item) is stored in one write, so no item waits for
        a slower one's embedding; items given as vectors go in the first write. An item that
        fails (its checks, its embedding) gets its error. A repeated id keeps its last item as if
        they came one after another: a group that repeats an id is stored in one write once
        every embedding is back. An error that is not about one item (collection not found, the
        deadline, the commit) is raised for the items not yet handed back."""
        started = time.monotonic()
        collection = self.collection(name, "collection")
        config = collection.config
        timings = [Timings() for _ in items]
        ready: dict[int, Vector | OnespaceError] = {}
        inputs: list[tuple[int, EmbedInput]] = []
        spec: ModelSpec | None = None
        for i, item in enumerate(items):
            try:
                if item.content is not None:
                    spec = spec or self.model(config.model)
                    where = f"{field}.content"
                    inputs.append(
                        (i, self.prepare(item.content, spec, config.dimension, Purpose.GENERIC_INDEX, where))
                    )
                elif item.vector is not None:
                    ready[i] = item.vector
                else:
                    raise InvalidArgument(f"{field}.source", "set either content or vector")
            except InvalidArgument as exc:
                ready[i] = exc
        in_one_write = len({item.id for item in items}) < len(items)
        if inputs:
            embeddings = self.embed_inputs(
                [x for _, x in inputs], [True] * len(inputs), deadline=deadline, admission=Admission.WAIT
            )
            async with contextlib.aclosing(embeddings) as waves:
                async for wave in waves:
                    for j, outcome in wave:
                        i = inputs[j][0]
                        if isinstance(outcome, OnespaceError):
                            ready[i] = _renamed(outcome, f"{field}.content")
                            continue
                        embedded, made = outcome
                        ready[i] = embedded.result.embeddings[0].vector
                        timings[i].add(made)
                    if not in_one_write:
                        yield await self._store_each(
                            collection, items, ready, timings, started, deadline, field
                        )
                        ready = {}
        if ready:
            yield await self._store_each(collection, items, ready, timings, started, deadline, field)

    async def _store_each(
        self,
        collection: CollectionHandle,
        items: Sequence[ItemIn],
        ready: Mapping[int, Vector | OnespaceError],
        timings: Sequence[Timings],
        started: float,
        deadline: float,
        field: str,
    ) -> list[tuple[int, Timings | OnespaceError]]:
        """Store the items of `ready` that have a vector, in one write (in position order, a
        repeated id keeping its last item); each item's timings, or its error."""
        results: list[tuple[int, Timings | OnespaceError]] = []
        prepared: dict[str, PreparedRecord] = {}
        for i in sorted(ready):
            vector = ready[i]
            if isinstance(vector, OnespaceError):
                results.append((i, vector))
                continue
            item = items[i]
            modality = item.content.modality if item.content is not None else None
            try:
                record = Record(item.id, vector, modality, dict(item.metadata))
                (checked,) = collection.prepare_upsert([record], field=field).records
            except InvalidArgument as exc:
                results.append((i, exc))
                continue
            prepared.pop(checked.id, None)  # a repeated id keeps its last record, in that position
            prepared[checked.id] = checked
            results.append((i, timings[i]))
        stored = [timing for _, timing in results if isinstance(timing, Timings)]
        if stored:
            index_start = time.monotonic()
            await self._commit(collection, UpsertOp(tuple(prepared.values()), len(stored)), deadline)
            done = time.monotonic()
            for timing in stored:
                timing.index, timing.total = done - index_start, done - started
        return results

    async def get(self, name: str, ids: Sequence[str], include_vectors: bool) -> list[StoredItem | None]:
        collection = self.collection(name, "collection")
        return await asyncio.to_thread(collection.get, ids, include_vectors, self.settings.max_request_bytes)

    async def delete(self, name: str, ids: Sequence[str], *, deadline: float) -> int:
        collection = self.collection(name, "collection")
        return await self._commit(collection, DeleteOp(tuple(ids)), deadline)

    async def _commit(self, collection: CollectionHandle, op: WriteOp, deadline: float) -> int:
        """Commit `op` durably with whatever else is waiting; its result. Traced and counted."""
        submitted = time.monotonic()
        result, commit = await self.writes.commit(collection, op, deadline=deadline)
        if self.tracer is not None:
            _trace_commit(self.tracer, collection, submitted, commit)
        self.metrics.index_items.labels(collection.name).set(len(collection))
        return result

    # --- search --------------------------------------------------------------------------------
    async def search(
        self, request: SearchIn, *, deadline: float
    ) -> tuple[list[Hit], CollectionHandle, int, Timings]:
        started = time.monotonic()
        resolved = await self._resolve_query(request, deadline)
        submitted = time.monotonic()
        hits, call = await self.searches.search(resolved.collection, resolved.query, deadline)
        if self.tracer is not None:
            _trace_search(self.tracer, resolved, submitted, call)
        resolved.timings.index = call.seconds
        resolved.timings.total = time.monotonic() - started
        return hits, resolved.collection, resolved.dimension, resolved.timings

    async def search_batch(
        self, requests: Sequence[SearchIn], *, deadline: float
    ) -> list[tuple[list[Hit], CollectionHandle, int, Timings]]:
        """Many queries at once, all or nothing: every query is resolved and checked before any is
        searched (an error names `queries[i]`), then all join their collections' search batches
        together, awaited as plain futures (no task per query)."""
        started = time.monotonic()
        if any(r.content is not None for r in requests):  # embedding waits: resolve concurrently
            resolving = [
                self._resolve_query(r, deadline, where=f"queries[{i}]") for i, r in enumerate(requests)
            ]
            resolved = await gather_all(resolving)
        else:
            resolved = [
                await self._resolve_query(r, deadline, where=f"queries[{i}]") for i, r in enumerate(requests)
            ]
        self._check_vectors_fit(resolved)
        submitted = time.monotonic()
        futures = [self.searches.submit(r.collection, r.query, deadline) for r in resolved]
        results = await asyncio.gather(*futures)
        total = time.monotonic() - started
        out = []
        for r, (hits, call) in zip(resolved, results, strict=True):
            if self.tracer is not None:
                _trace_search(self.tracer, r, submitted, call)
            r.timings.index = call.seconds
            r.timings.total = total
            out.append((hits, r.collection, r.dimension, r.timings))
        return out

    def _check_vectors_fit(self, resolved: Sequence[_Resolved]) -> None:
        """Hits asked with vectors carry the full stored vector each: a batch whose vectors could
        pass the message limit is refused before its hits (and their arrays) are built."""
        limit = self.settings.max_request_bytes
        size = sum(
            min(r.query.k, len(r.collection)) * 4 * r.collection.config.dimension
            for r in resolved
            if r.query.include_vectors
        )
        if size > limit:
            raise response_too_large(size, limit, bound="up to")

    async def _resolve_query(self, request: SearchIn, deadline: float, where: str = "") -> _Resolved:
        """The collection, rank dimension and checked query vector for one search request."""
        try:
            return await self._resolve(request, deadline)
        except InvalidArgument as exc:
            raise (exc.at(where) if where else exc) from None
        except NotFound as exc:
            raise (NotFound(f"{where}: {exc.message}") if where else exc) from None

    def _check_k(self, k: int) -> None:
        """A search's k within the server's bound (InvalidArgument names `k`)."""
        if not 1 <= k <= self.settings.max_k:
            raise InvalidArgument("k", f"{k} is outside 1..{self.settings.max_k}")

    async def _resolve(self, request: SearchIn, deadline: float) -> _Resolved:
        collection = self.collection(request.collection, "collection")
        config = collection.config
        self._check_k(request.k)
        dimension = config.dimension if request.dimension is None else request.dimension
        if not 1 <= dimension <= config.dimension:
            raise InvalidArgument(
                "dimension",
                f"{dimension} is outside 1..{config.dimension} (the collection's stored dimension)",
            )
        timings = Timings()
        if request.content is not None:
            spec = self.model(config.model)
            held = request.filter.modalities or collection.modalities()
            purpose = request.purpose or contents.retrieval_purpose(held)
            item = self.prepare(request.content, spec, config.dimension, purpose, "content")
            embedded, outcome = await _named(
                self.embed_input(item, deadline=deadline, admission=Admission.FAIL_FAST), "content"
            )
            timings.add(outcome)
            vector = embedded.result.embeddings[0].vector
        elif request.vector is not None:
            vector = request.vector  # length and finiteness: check_query, once
        elif request.id is not None:
            try:
                vector = await asyncio.to_thread(collection.vector, request.id)
            except NotFound as exc:
                raise NotFound(f"id: {exc.message}") from exc
        else:
            raise InvalidArgument("query", "set one of content, vector or id")
        query = Query(vector, request.k, dimension, request.filter, request.include_vectors)
        checked = collection.check_query(query)  # a bad query must not fail the others batched with it
        return _Resolved(collection, dimension, checked, timings)


@dataclass(frozen=True, slots=True)
class Health:
    provider: str | None
    store: str | None


@dataclass(slots=True)
class _Resolved:
    collection: CollectionHandle
    dimension: int
    query: CheckedQuery
    timings: Timings


def _trace_embed(tracer: Tracer, provider: str, item: EmbedInput, outcome: EmbedOutcome) -> None:
    attributes: dict[str, str | int | float | bool] = {
        "onespace.model": item.model,
        "onespace.modality": item.content.modality.value,
        "onespace.dimension": item.dimension,
    }
    if outcome.cached:
        tracer.event("onespace.cache_hit", attributes)
        return
    arrived = outcome.arrived_at  # a joiner may arrive after its item was sent: no wait then
    tracer.stage("onespace.queue_wait", arrived, max(arrived, outcome.sent_at), attributes)
    tracer.stage(
        "onespace.provider_call",
        outcome.sent_at,
        outcome.sent_at + outcome.provider_seconds,
        {
            **attributes,
            "onespace.provider": provider,
            "onespace.batch_size": outcome.batch_size,
            "onespace.joined": outcome.joined,
        },
    )


def _trace_search(tracer: Tracer, resolved: _Resolved, submitted: float, call: IndexCall) -> None:
    attributes: dict[str, str | int | float | bool] = {
        "onespace.collection": resolved.collection.config.name,
        "onespace.k": resolved.query.k,
    }
    tracer.stage("onespace.search_wait", submitted, call.started, attributes)
    tracer.stage(
        "onespace.index_search",
        call.started,
        call.started + call.seconds,
        {**attributes, "onespace.dimension": resolved.dimension, "onespace.batch_size": call.size},
    )


def _trace_commit(
    tracer: Tracer, collection: CollectionHandle, submitted: float, commit: GroupCommit
) -> None:
    attributes: dict[str, str | int | float | bool] = {"onespace.collection": collection.config.name}
    tracer.stage("onespace.commit_wait", submitted, commit.started, attributes)
    tracer.stage(
        "onespace.commit",
        commit.started,
        commit.started + commit.seconds,
        {**attributes, "onespace.group_items": commit.items},
    )


async def _named(aw: Awaitable[T], field: str) -> T:
    """`aw`'s result; an InvalidArgument it raises about `content` (or `content.<x>`) is raised
    naming `field` (or `field.<x>`) instead.

    A provider knows nothing of the request: errors found while decoding (truncation, sample and
    frame limits) name the generic `content`; only here is it known which item that was.
    """
    try:
        return await aw
    except InvalidArgument as exc:
        _raise_named(exc, field)


def _raise_named(exc: OnespaceError, field: str) -> NoReturn:
    """Raise `exc`, naming `field` instead when it is about the generic `content` (`_renamed`)."""
    named = _renamed(exc, field)
    if named is exc:
        raise exc
    raise named from exc


def _renamed(exc: E, field: str) -> E | InvalidArgument:
    """`exc`, or for an InvalidArgument about `content` (or `content.<x>`) the same naming
    `field` (or `field.<x>`); see `_named`."""
    if not isinstance(exc, InvalidArgument) or not (
        exc.field == "content" or exc.field.startswith("content.")
    ):
        return exc
    return InvalidArgument(field + exc.field[len("content") :], exc.reason, request_id=exc.request_id)


def _normalized(result: ProviderResult) -> ProviderResult:
    embeddings = []
    for e in result.embeddings:
        norm = float(np.linalg.norm(e.vector))
        vector = (e.vector / norm).astype(np.float32) if norm > 0 else e.vector
        embeddings.append(ProviderEmbedding(vector, e.type, e.truncated_char_length))
    return ProviderResult(tuple(embeddings), result.request_id)


async def gather_all(aws: Sequence[Awaitable[T]]) -> list[T]:
    """Run all; on the first failure cancel the rest and raise it (no task is left behind)."""
    if len(aws) == 1:
        return [await aws[0]]
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        pending = [t for t in tasks if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    failures = [e for t in tasks if not t.cancelled() and (e := t.exception()) is not None]
    if failures:  # every failure retrieved, so none is logged as "never retrieved"
        raise failures[0]
    return [t.result() for t in tasks]
