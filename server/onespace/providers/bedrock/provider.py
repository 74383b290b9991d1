"""`BedrockProvider`: the gateway's models on Amazon Bedrock Runtime (Nova first, the default).

Per `embed` call: every input is re-checked against its model (`content.check` and the family's
own limits) so nothing Bedrock would refuse is sent; the family groups inputs into calls (Cohere:
up to 96 texts; others: one) that run concurrently; each call is retried on transient failures
within the deadline; a failure of any call fails the whole batch. Request bodies are encoded and
response bodies decoded with orjson (json.loads was ~0.3 ms of a 1024-d Nova response).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import orjson

from onespace.config import Settings
from onespace.content import MediaLimits, check
from onespace.errors import Internal, InvalidArgument, PermissionDenied
from onespace.models import ModelSpec
from onespace.providers.base import EmbedInput, Provider, ProviderEmbedding, ProviderEvents, ProviderResult
from onespace.providers.bedrock.client import BedrockClient
from onespace.providers.bedrock.cohere import CohereFamily
from onespace.providers.bedrock.errors import Transient
from onespace.providers.bedrock.family import BadResponse, Family
from onespace.providers.bedrock.nova import NovaFamily
from onespace.providers.bedrock.retry import RetryPolicy, call_with_retries
from onespace.providers.bedrock.titan import TitanMultimodalFamily, TitanTextFamily

__all__ = ["BedrockCounters", "BedrockProvider"]

T = TypeVar("T")
_FAMILIES: tuple[Family, ...] = (NovaFamily(), TitanMultimodalFamily(), TitanTextFamily(), CohereFamily())


@dataclass(slots=True)
class BedrockCounters:
    """Plain counters (the engine's metrics read `events`; these are for tests and debugging)."""

    calls: int = 0  # HTTP attempts, retries included
    throttles: int = 0  # ThrottlingException answers
    retries: Counter[str] = field(default_factory=Counter)  # by reason
    transient: Counter[str] = field(default_factory=Counter)  # transient failures by Bedrock code


class BedrockProvider(Provider):
    name = "bedrock"

    def __init__(
        self,
        settings: Settings,
        *,
        retry: RetryPolicy | None = None,
        events: ProviderEvents | None = None,
        seed: int | None = None,
    ) -> None:
        self.settings = settings
        self.retry = retry or RetryPolicy(max_attempts=settings.bedrock_max_attempts)
        self.events = events
        self.counters = BedrockCounters()
        self._rng = random.Random(seed)
        self._client = BedrockClient(settings)
        self._families = {spec.id: fam for fam in _FAMILIES for spec in fam.specs}
        self._specs = tuple(spec for fam in _FAMILIES for spec in fam.specs)
        self._refused: str | None = None  # the last credential refusal, until a call succeeds

    def models(self) -> Sequence[ModelSpec]:
        return self._specs

    async def start(self) -> None:
        await self._client.start()

    async def close(self) -> None:
        await self._client.close()

    async def check(self) -> str | None:
        """Credentials must resolve, and the last call must not have been refused for them."""
        return await self._client.credentials_problem() or self._refused

    async def embed(
        self,
        inputs: Sequence[EmbedInput],
        *,
        deadline: float | None = None,
        interactive: bool = False,
    ) -> list[ProviderResult]:
        if not inputs:
            return []
        first = inputs[0]
        spec = self.model(first.model)
        family = self._families[spec.id]
        items = [self._checked(i, item, first, spec, family) for i, item in enumerate(inputs)]
        for modality in {item.content.modality for item in items}:
            limit = self.max_batch(spec.id, modality)
            if len(items) > limit:
                raise InvalidArgument(
                    "inputs",
                    f"{len(items)} inputs exceed the {limit} one call to {spec.id} may carry "
                    f"for {modality.value}",
                )
        groups = family.group(items, spec)
        calls = [self._call(family, spec, [items[i] for i in group], deadline) for group in groups]
        answers = await _all_or_nothing(calls)
        results: list[ProviderResult | None] = [None] * len(items)
        for group, (embeddings, request_id) in zip(groups, answers, strict=True):
            for index, embedded in zip(group, embeddings, strict=True):
                results[index] = ProviderResult(embedded, request_id)
        assert all(r is not None for r in results)
        return [r for r in results if r is not None]

    def _checked(
        self, i: int, item: EmbedInput, first: EmbedInput, spec: ModelSpec, family: Family
    ) -> EmbedInput:
        if (item.model, item.dimension, item.purpose) != (first.model, first.dimension, first.purpose):
            raise InvalidArgument(
                f"inputs[{i}]", "all inputs of one call must share model, dimension and purpose"
            )
        spec.check_dimension(item.dimension)
        content = check(item.content, spec, "content", MediaLimits.of(self.settings))
        checked = EmbedInput(content, item.model, item.dimension, item.purpose)
        family.check(checked, spec)
        return checked

    async def _call(
        self, family: Family, spec: ModelSpec, items: Sequence[EmbedInput], deadline: float | None
    ) -> tuple[list[tuple[ProviderEmbedding, ...]], str | None]:
        body = orjson.dumps(family.request(items, spec))

        async def attempt() -> tuple[bytes, str | None]:
            self.counters.calls += 1
            return await self._client.invoke(spec.id, body)

        try:
            raw, request_id = await call_with_retries(
                attempt,
                policy=self.retry,
                rng=self._rng,
                deadline=deadline,
                what=f"Bedrock call to {spec.id}",
                on_transient=lambda failure, will_retry: self._transient(spec.id, failure, will_retry),
                wait=lambda failure, delay: self._wait(spec.id, failure, delay),
            )
        except PermissionDenied as exc:
            self._refused = f"Bedrock refused the credentials: {exc.message}"
            raise
        self._refused = None
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise Internal(
                f"Bedrock returned an unexpected response for model {spec.id}: the body is not valid "
                f"JSON ({exc})",
                request_id=request_id,
            ) from exc
        try:
            return family.parse(payload, items, spec), request_id
        except (BadResponse, ValueError) as exc:
            raise Internal(
                f"Bedrock returned an unexpected response for model {spec.id}: {exc}", request_id=request_id
            ) from exc

    def _transient(self, model: str, failure: Transient, will_retry: bool) -> None:
        self.counters.transient[failure.code] += 1
        if failure.reason == "throttling":
            self.counters.throttles += 1
            if self.events is not None:
                self.events.throttled(model)
        if will_retry:
            self.counters.retries[failure.reason] += 1
            if self.events is not None:
                self.events.retried(model, failure.reason)

    async def _wait(self, model: str, failure: Transient, delay: float) -> None:
        """The backoff before a retry: the engine's, when there is one (it may wait for capacity)."""
        if self.events is None:
            await asyncio.sleep(delay)
        else:
            await self.events.backoff(model, failure.reason, delay)


async def _all_or_nothing(calls: Sequence[Awaitable[T]]) -> list[T]:
    """Await every call; on the first failure cancel the rest and raise that failure."""
    if len(calls) == 1:
        return [await calls[0]]
    tasks = [asyncio.ensure_future(c) for c in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
