"""The decoder boundary: foreign decoder errors become InvalidArgument, media limits are checked, and
decodes share one memory budget.

Pillow, libsndfile and FFmpeg raise a zoo of exception types (OSError, RuntimeError, ValueError,
SyntaxError, EOFError, av.FFmpegError, ...) on bytes that merely look right. Everything raised while
decoding is caller input being wrong, so it is translated here, once, with the cause kept. Media
found cut short (`Truncated`, raised by the format checks) is refused the same way, saying so: a
truncated file is never embedded as if it were the whole.

Memory: what a decode materialises is bounded per item by `MediaLimits` (read from the header
before decoding), and across concurrent decodes by one `ByteBudget` of `decode_budget_bytes`: each
decode reserves its estimated peak before it starts (`decode_memory`) and waits, in arrival order,
while the rest of the budget is in use. Decodes run on the local provider's worker threads, so
waiting blocks a worker, never the event loop. A large decode hands its freed memory back to the OS
before its bytes return to the budget: glibc keeps what a thread frees in that thread's arena, so
without it eight workers decoding one 144 MB image each, one after another, kept 1.1 GB resident.

Limits and budget travel together as a `Decoding`, which the local provider makes once and passes
to every decode it runs: nothing here is process-wide.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import re
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from onespace.content import MediaLimits
from onespace.errors import InvalidArgument, OnespaceError
from onespace.models import ModelSpec

__all__ = [
    "DURATION_TOLERANCE_SECONDS",
    "ByteBudget",
    "Decoding",
    "Reservation",
    "Truncated",
    "check_duration",
    "check_frames",
    "check_samples",
    "decode_errors",
    "decode_memory",
    "short_reason",
]

# Containers often report a few tens of milliseconds beyond the nominal length (AAC priming,
# rounded timestamps): a "30 s" clip must not be refused for 30.02 s.
DURATION_TOLERANCE_SECONDS = 0.1
_MAX_REASON = 160
_OBJECT_REPR = re.compile(r"\s*<[^<>]*\bat 0x[0-9a-fA-F]+>")


class Truncated(Exception):
    """The bytes end before their own structure says they do (raised by the per-format checks)."""


def short_reason(exc: BaseException) -> str:
    """A one-line, bounded description of a decoder error, without errno codes or object addresses."""
    strerror = getattr(exc, "strerror", None)  # FFmpeg and OS errors: the message without the errno
    text = strerror if isinstance(strerror, str) and strerror else str(exc)
    text = " ".join(_OBJECT_REPR.sub("", text).split()) or type(exc).__name__
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


@contextmanager
def decode_errors(field: str, what: str) -> Iterator[None]:
    """Translate any decoder failure inside the block to `InvalidArgument(field, "cannot decode ...")`;
    `Truncated` reads "cannot decode <what>: truncated: <how>"."""
    try:
        yield
    except OnespaceError:
        raise
    except Truncated as exc:
        raise InvalidArgument(field, f"cannot decode {what}: truncated: {exc}") from exc
    except Exception as exc:  # every decoder failure is bad input, never a server fault
        raise InvalidArgument(field, f"cannot decode {what}: {short_reason(exc)}") from exc


def check_duration(field: str, seconds: float, spec: ModelSpec) -> None:
    """Refuse media longer than the model's synchronous limit (Nova: 30 s)."""
    limit = spec.limits.max_media_seconds
    if seconds > limit + DURATION_TOLERANCE_SECONDS:
        raise InvalidArgument(
            field,
            f"duration {seconds:.1f} s exceeds the {limit:g} s limit of {spec.id} "
            "(split the media into shorter clips)",
        )


def check_samples(field: str, samples: int, how: str, limits: MediaLimits) -> None:
    """Refuse audio decoding to more than `max_audio_samples` (`how`: where the count comes from)."""
    limit = limits.max_audio_samples
    if samples > limit:
        raise InvalidArgument(
            field, f"{samples} samples decoded ({how}) exceeds the limit of {limit} (max_audio_samples)"
        )


def check_frames(field: str, frames: int, how: str, limits: MediaLimits) -> None:
    """Refuse video decoding to more than `max_video_frames` frames (`how`: where the count comes from)."""
    limit = limits.max_video_frames
    if frames > limit:
        raise InvalidArgument(
            field, f"{frames} frames decoded ({how}) exceeds the limit of {limit} (max_video_frames)"
        )


@dataclass(eq=False, slots=True)
class _Waiter:
    size: int
    wake: Callable[[], None]
    granted: bool = False


class ByteBudget:
    """A semaphore counted in bytes, shared by threads and coroutines, first come first served.

    `acquire(n)` blocks the calling thread, `acquire_async(n)` suspends the calling task, until `n`
    bytes fit and every earlier waiter is served (so a large request is not starved by small ones).
    A request over the whole capacity is cut to it: it runs alone, once everything else has left.
    Both return the bytes actually reserved, which the caller gives back with `release`.
    """

    def __init__(self, capacity: int, on_change: Callable[[int, int], None] | None = None) -> None:
        if capacity <= 0:
            raise ValueError(f"a byte budget needs a positive capacity, not {capacity}")
        self.capacity = capacity
        # Told (bytes in use, waiters) after every change, under the lock: it must be quick (a gauge).
        self.on_change = on_change
        self._lock = threading.Lock()
        self._used = 0
        self._waiters: deque[_Waiter] = deque()
        self.peak = 0  # high-water mark of the bytes reserved at once
        self.waits = 0  # reservations that had to wait

    @property
    def used(self) -> int:
        return self._used

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def acquire(self, n: int) -> int:
        """Reserve `n` bytes (at most the capacity), blocking this thread until they fit."""
        event = threading.Event()
        waiter = self._enter(n, event.set)
        if waiter.granted:
            return waiter.size
        try:
            event.wait()
        except BaseException:
            self._leave(waiter)
            raise
        return waiter.size

    async def acquire_async(self, n: int) -> int:
        """Reserve `n` bytes (at most the capacity), suspending this task until they fit."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def wake() -> None:  # called under the lock, from any thread
            loop.call_soon_threadsafe(lambda: None if future.done() else future.set_result(None))

        waiter = self._enter(n, wake)
        if waiter.granted:
            return waiter.size
        try:
            await future
        except BaseException:
            self._leave(waiter)
            raise
        return waiter.size

    def release(self, n: int) -> None:
        """Give back `n` reserved bytes and serve the waiters that now fit, in order."""
        with self._lock:
            if not 0 <= n <= self._used:
                raise ValueError(f"releasing {n} bytes of the {self._used} reserved")
            self._used -= n
            self._serve()
            self._changed()

    @contextmanager
    def reserve(self, n: int) -> Iterator[int]:
        """`acquire(n)` for the duration of the block."""
        got = self.acquire(n)
        try:
            yield got
        finally:
            self.release(got)

    def _enter(self, n: int, wake: Callable[[], None]) -> _Waiter:
        waiter = _Waiter(min(max(n, 0), self.capacity), wake)
        with self._lock:
            if not self._waiters and self._used + waiter.size <= self.capacity:
                self._take(waiter)
            else:
                self.waits += 1
                self._waiters.append(waiter)
            self._changed()
        return waiter

    def _leave(self, waiter: _Waiter) -> None:
        """A waiter gave up (interrupted, cancelled): withdraw it, or return what it was granted."""
        with self._lock:
            if waiter.granted:
                self._used -= waiter.size
            else:
                self._waiters.remove(waiter)
            self._serve()
            self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self._used, len(self._waiters))

    def _take(self, waiter: _Waiter) -> None:
        waiter.granted = True
        self._used += waiter.size
        self.peak = max(self.peak, self._used)

    def _serve(self) -> None:
        while self._waiters and self._used + self._waiters[0].size <= self.capacity:
            waiter = self._waiters.popleft()
            self._take(waiter)
            try:
                waiter.wake()
            except RuntimeError:  # its event loop is closed: nobody will use the grant
                self._used -= waiter.size


@dataclass(frozen=True, slots=True)
class Decoding:
    """What decodes may cost: each item (`limits`), and all of them at once (`budget`).

    Whoever runs decodes makes one and passes it to each (the local provider: one for its life), so
    the decodes it runs share one budget, and two providers in one process do not share theirs.
    """

    limits: MediaLimits
    budget: ByteBudget

    @classmethod
    def of(cls, limits: MediaLimits | None = None) -> Decoding:
        """`limits` (the defaults when None) with a new budget of their `decode_budget_bytes`."""
        if limits is None:
            limits = MediaLimits()
        return cls(limits, ByteBudget(limits.decode_budget_bytes))


# Reservations from this size up give their freed memory back to the OS when they end.
_TRIM_BYTES = 16 << 20


def _load_malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim` (returns free arena memory to the OS), or None on another libc."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None
    if trim is not None:
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_malloc_trim = _load_malloc_trim()


class Reservation:
    """A decode's share of the decode budget: `take(n)` once its size is known (blocking)."""

    def __init__(self, budget: ByteBudget) -> None:
        self.budget = budget
        self.bytes = 0

    def take(self, n: int) -> None:
        if self.bytes:
            raise RuntimeError("a decode reserves once")
        self.bytes = self.budget.acquire(n)


@contextmanager
def decode_memory(budget: ByteBudget) -> Iterator[Reservation]:
    """A reservation in the decode `budget` for the block. Free what the decode made inside the block
    (close images and containers, keep only the small result): on exit, a large reservation first
    returns the freed memory to the OS, then its bytes to the budget."""
    reservation = Reservation(budget)
    try:
        yield reservation
    finally:
        if reservation.bytes:
            if reservation.bytes >= _TRIM_BYTES and _malloc_trim is not None:
                _malloc_trim(0)
            reservation.budget.release(reservation.bytes)
