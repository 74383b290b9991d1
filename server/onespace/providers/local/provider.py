"""`LocalProvider`: the embedded default provider, running `embed_content` on a thread pool.

Decoding and featurising are CPU work (numpy, Pillow, libsndfile and FFmpeg release the GIL for
most of it), so they run in the provider's own executor and never on the event loop.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from onespace.errors import DeadlineExceeded, Internal, OnespaceError, Unavailable
from onespace.models import LOCAL_MODEL, ModelSpec
from onespace.providers.base import EmbedInput, Provider, ProviderResult
from onespace.providers.local.embed import embed_content, warm_up

__all__ = ["LocalProvider"]


class LocalProvider(Provider):
    """Deterministic, offline embeddings for every modality (see `embed_content`)."""

    name = "local"

    def __init__(self, workers: int = 0) -> None:
        self._workers = workers or os.cpu_count() or 1
        self._executor = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="onespace-local")
        self._closed = False

    @property
    def workers(self) -> int:
        return self._workers

    def models(self) -> Sequence[ModelSpec]:
        return (LOCAL_MODEL,)

    async def embed(
        self, inputs: Sequence[EmbedInput], *, deadline: float | None = None
    ) -> list[ProviderResult]:
        """Embed every input concurrently on the executor; results in input order.

        If any input fails, the call fails with the first failure in input order (the engine
        fails every caller in a failed call). A deadline already past refuses the call up front;
        work once started runs to the end (it cannot be interrupted, and it is short).
        """
        if self._closed:
            raise Unavailable("the local provider is closed")
        if deadline is not None and time.monotonic() >= deadline:
            raise DeadlineExceeded("the deadline passed before the local provider started")
        specs = [self.model(item.model) for item in inputs]
        loop = asyncio.get_running_loop()
        try:
            futures = [
                loop.run_in_executor(self._executor, embed_content, item.content, item.dimension, spec)
                for item, spec in zip(inputs, specs, strict=True)
            ]
        except RuntimeError as exc:  # the executor was shut down by a concurrent close()
            raise Unavailable("the local provider is closed") from exc
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        results: list[ProviderResult] = []
        for outcome in outcomes:
            if isinstance(outcome, OnespaceError):
                raise outcome
            if isinstance(outcome, BaseException):
                raise Internal(f"local provider failed: {type(outcome).__name__}: {outcome}") from outcome
            results.append(outcome)
        return results

    async def start(self) -> None:
        """Build the projections before the first request, off the event loop."""
        if self._closed:
            raise Unavailable("the local provider is closed")
        await asyncio.get_running_loop().run_in_executor(self._executor, warm_up)

    async def close(self) -> None:
        """Stop accepting work and wait for running work to finish (off the event loop)."""
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)
