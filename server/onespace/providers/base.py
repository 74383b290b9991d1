"""The provider interface: the one seam between the gateway's engine and a model backend.

A provider embeds a batch of inputs that share a model, dimension and purpose, and returns one
result per input, in order. It raises only `onespace.errors` types (foreign errors are translated
at the provider's boundary). The engine decides batching, concurrency, dedup and deadlines; a
provider just says how many inputs one call may carry (`max_batch`).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from onespace.content import Content, EmbeddingType, Purpose
from onespace.errors import NotFound
from onespace.models import Modality, ModelSpec

__all__ = ["EmbedInput", "Provider", "ProviderEmbedding", "ProviderEvents", "ProviderResult", "Vector"]

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class EmbedInput:
    """One input as the provider sees it: already checked against the model's limits."""

    content: Content
    model: str
    dimension: int
    purpose: Purpose


@dataclass(frozen=True, slots=True)
class ProviderEmbedding:
    """One vector (float32, `dimension` long, not necessarily unit norm)."""

    vector: Vector
    type: EmbeddingType
    truncated_char_length: int | None = None


@dataclass(frozen=True, slots=True)
class ProviderResult:
    """Everything one input produced: one embedding, or two for AUDIO_VIDEO_SEPARATE video."""

    embeddings: tuple[ProviderEmbedding, ...]
    request_id: str | None = None


class ProviderEvents(Protocol):
    """What a provider reports while it works, so the engine can adapt (and count) as it happens."""

    def throttled(self, model: str) -> None:
        """The upstream answered with throttling (whether or not a retry then succeeded)."""

    def retried(self, model: str, reason: str) -> None:
        """A call is being retried; `reason` is a short bounded label, e.g. `throttling`, `5xx`."""

    async def backoff(self, model: str, reason: str, delay: float) -> None:
        """Wait before that retry: `delay` seconds, or whatever the engine's capacity calls for
        (a throttled call holding a permit over a limit just cut waits for a free one instead)."""


class Provider(abc.ABC):
    """A model backend. Subclasses: `LocalProvider`, `BedrockProvider`."""

    name: str = "abstract"
    events: ProviderEvents | None = None

    @abc.abstractmethod
    def models(self) -> Sequence[ModelSpec]:
        """Every model this provider serves; the first is the default."""

    def model(self, model_id: str) -> ModelSpec:
        """The spec of `model_id`, or NotFound naming the models on offer."""
        for spec in self.models():
            if spec.id == model_id:
                return spec
        offered = ", ".join(s.id for s in self.models())
        raise NotFound(
            f"options.model: unknown model {model_id!r} for provider {self.name} (offers {offered})"
        )

    async def check(self) -> str | None:
        """Why this provider cannot serve now (None: it can). Cheap: called every few seconds
        for health checking, so it must not make billable calls."""
        return None

    @property
    def default_model(self) -> ModelSpec:
        return self.models()[0]

    def max_batch(self, model_id: str, modality: Modality) -> int:
        """How many inputs of `modality` one call to `model_id` may carry."""
        if modality is not Modality.TEXT:
            return 1
        return self.model(model_id).limits.max_batch

    @abc.abstractmethod
    async def embed(
        self,
        inputs: Sequence[EmbedInput],
        *,
        deadline: float | None = None,
        interactive: bool = False,
    ) -> list[ProviderResult]:
        """Embed `inputs` (one model, dimension and purpose; at most `max_batch`) in one call.

        `deadline` is a `time.monotonic()` instant: retries must not run past it. `interactive`:
        a unary caller waits on an input of this call; a provider that queues calls of its own
        (the local one) takes such calls ahead of the bulk of stream items queued before them.
        """

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open long-lived resources (clients, pools)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what `start` opened. Called once on shutdown."""
