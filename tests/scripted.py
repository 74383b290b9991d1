"""A provider with scripted latency, capacity and failures, for deterministic engine tests.

It is a real `Provider` (the engine cannot tell it from Bedrock): it sleeps for `latency`, records
every call and how many overlapped, throttles calls beyond `capacity` when asked, and returns
vectors derived from the content hash, so equal inputs give equal vectors.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from onespace.content import EmbeddingType
from onespace.errors import InvalidArgument, OnespaceError, ResourceExhausted
from onespace.models import LOCAL_MODEL, ModelLimits, ModelSpec
from onespace.providers.base import EmbedInput, Provider, ProviderEmbedding, ProviderResult

__all__ = ["RefusingProvider", "ScriptedProvider"]


@dataclass
class ScriptedProvider(Provider):
    latency: float = 0.0
    capacity: int | None = None  # concurrent calls beyond this are throttled
    max_batch_size: int = 1
    fail_with: OnespaceError | None = None
    calls: list[int] = field(default_factory=list)  # batch size of each call
    seen: list[EmbedInput] = field(default_factory=list)
    interactive_calls: list[bool] = field(default_factory=list)  # `interactive=` of each call
    throttles: int = 0
    in_flight: int = 0
    peak: int = 0
    name: str = "scripted"
    gate: asyncio.Event | None = None  # when set, calls wait for it before answering
    gated_text: str | None = None  # ... only the calls carrying this text, when set
    started: asyncio.Event = field(default_factory=asyncio.Event)  # set when any call begins

    def models(self) -> Sequence[ModelSpec]:
        limits = ModelLimits(max_batch=self.max_batch_size)
        return (ModelSpec(LOCAL_MODEL.id, LOCAL_MODEL.modalities, LOCAL_MODEL.dimensions, 256, limits),)

    async def embed(
        self,
        inputs: Sequence[EmbedInput],
        *,
        deadline: float | None = None,
        interactive: bool = False,
    ) -> list[ProviderResult]:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            self.calls.append(len(inputs))
            self.seen.extend(inputs)
            self.interactive_calls.append(interactive)
            self.started.set()
            if self.gate is not None and (
                self.gated_text is None or any(i.content.text == self.gated_text for i in inputs)
            ):
                await self.gate.wait()
            if self.capacity is not None and self.in_flight > self.capacity:
                self.throttles += 1
                await asyncio.sleep(self.latency / 10)
                raise ResourceExhausted("throttled by the scripted provider", retry_after_seconds=0.01)
            await asyncio.sleep(self.latency)
            if self.fail_with is not None:
                raise self.fail_with
            return [self._vector(i) for i in inputs]
        finally:
            self.in_flight -= 1

    @staticmethod
    def _vector(item: EmbedInput) -> ProviderResult:
        seed = int.from_bytes(hashlib.blake2b(item.content.digest(), digest_size=8).digest(), "little")
        vector = np.random.default_rng(seed).standard_normal(item.dimension).astype(np.float32)
        vector /= np.linalg.norm(vector)
        return ProviderResult((ProviderEmbedding(vector, EmbeddingType.TEXT),))


@dataclass
class RefusingProvider(ScriptedProvider):
    """Refuses (InvalidArgument about `content.text`) any call carrying a text with "bad" in it, as
    Bedrock refuses a whole batch for one input; `on_refusal` runs at each refusal."""

    refused: list[int] = field(default_factory=list)  # size of each refused call
    on_refusal: Callable[[], None] = lambda: None

    async def embed(
        self,
        inputs: Sequence[EmbedInput],
        *,
        deadline: float | None = None,
        interactive: bool = False,
    ) -> list[ProviderResult]:
        bad = [i.content.text for i in inputs if "bad" in (i.content.text or "")]
        if bad:
            self.refused.append(len(inputs))
            self.seen.extend(inputs)
            self.on_refusal()
            raise InvalidArgument("content.text", f"{bad[0]!r} is refused by the provider")
        return await super().embed(inputs, deadline=deadline)
