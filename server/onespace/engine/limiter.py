"""The limit on concurrent provider calls: AIMD on the throttle *rate* of a window of calls, not on
single throttles; it checks whether a cut helped (and undoes it when it did not), learns the
throttle rate that does not depend on us, and holds just under the level that last failed.

Why not "halve on every throttled epoch" (what this was): Bedrock throttles for two reasons that
call for opposite answers. When our own load exceeds a quota (a concurrency cap, an RPM bucket),
fewer calls in flight is the cure. When throttles come at random whatever our load (a shared
fleet shedding a share of everyone's calls), cutting concurrency cures nothing: the provider
retries the throttled call anyway, and a smaller limit only lowers throughput. Halving on every
throttled epoch collapsed a 20%-random-throttle run to a limit of 4-5 and ~30 items/s, and against
a hard cap of 16 it averaged about 0.67 of the cap (AIMD's sawtooth between C/2 and C).

- **Windows.** Outcomes are counted per *attempt*: a success when a call returns, a throttle
  when the provider reports one (`ProviderEvents.throttled`, retries included), or when a call
  fails with ResourceExhausted and nothing was reported. A window closes after
  `max(window, limit)` outcomes, about one round of every permit. Outcomes of permits issued
  before the limit last fell or was restored do not count: they describe the old limit; nor do
  outcomes while more permits are out than the limit (the old ones still draining: a call
  sleeping in backoff under the old limit throttles the new ones when it wakes). The first
  window ramps up (connections, callers arriving) and decides nothing unless it closes early;
  time with nothing in flight is not counted.
- **Sustained throttling** = a window's throttle rate above background + max(`tolerance`, 3
  standard errors of the background rate over the window), so noise around a background rate
  never cuts the limit. A window closes early (8 outcomes at least) on heavy throttling: over
  half of it throttled even if every other outcome succeeds, or over half the permits throttled
  within its first round, or, in the first round after a slow-start raise, more permits throttled
  than the background explains plus half of those the raise added (the raise overshot: against
  a cap of 16 the 8 permits of a raise to 24 are all throttled at once, and waiting for a heavy
  window let them retry into the cap ~17 times; cap 16 x 250 ms: 3.3-3.8% of calls throttled
  over 4 runs, was 4.5-5.4%).
- **Decrease** multiplicatively by the excess over the background, measured as the share of
  permits that were throttled (at most the throttle rate: a throttle comes back at once and is
  retried soon, so 8 permits over a cap of 16 throttle 17 times before a success is back), at
  most by half and by one permit at least: a limit one over a cap of 16 comes back to 16, not
  to 8 (TCP with a loss threshold rather than reacting to every loss; botocore's adaptive mode
  and Netflix's concurrency-limits also react to sustained signals).
- **The first cut** of a test takes a quarter of the limit at least (`_CONTRAST`) while no cut
  has helped and no level had failed before the run of cuts it belongs to (no `w_max`): a
  smaller one cannot tell random throttles from ours. At 20% random throttles a chain of cuts by
  the excess (16 -> 14 -> 12 -> 9 -> 7 -> 6) took ~1.2 s of a fresh gateway's first 4 s before
  the undo; now the window after the cut mostly judges it (16 -> 12 -> 16). Once a level has
  failed (slow start's overshoot of a cap, say), capacity is known to lie under it and a new
  run of cuts goes by the excess: against a cap of 16 at 100 ms a quarter there took one run
  from 17 to 12 and a second to climb back. (Tested on the run's state before its first cut:
  a later test in the same run, after a verdict of "conditions changed", takes a quarter too,
  else the random case went back to small cuts after its first.)
- **Did the cut help?** The full windows after a cut are compared with the one that caused it
  (a cut decided on an early close takes the first full window after it as reference, and goes
  on cutting while throttling is sustained). It helped if the throttle rate fell by more than 2
  standard errors of the difference, or if, after at least a quarter of the limit was cut, the
  *cost* of a success fell with the limit while 90% of the goodput was kept: permit-seconds held
  per successful call (Little's law: against a quota that binds, cost = limit / quota rate, so
  it falls in proportion to the cut; with random throttles it is latency plus backoffs, the same
  at any limit). An RPM bucket at 2x overload shows why the rate alone is not enough: throttled
  calls mostly sleep in backoff while holding their permit, so halving the limit lowers the
  throttle rate only from ~0.67 to ~0.44 while the cost halves. (A gateway short of CPU also
  sees the cost fall with the limit: keeping the cut then costs nothing until the goodput drops.)
  If the rate or the cost *rose* although the limit fell (by 2 standard errors, by 30%),
  conditions changed under the test (a quota's burst ran out): no verdict, judge afresh.
  If neither fell after at least a quarter of the limit was cut, the throttles are not our doing:
  the limit goes back to where it was before the run of cuts and their rate (both windows') becomes
  the background (unless it is above
  `max_background`: heavy throttling is treated as overload
  whatever its cause, and the limit keeps falling, to the floor if need be). Each window moves
  the background 1% of the way down to its own rate when that is lower (half-life ~70 windows
  once throttling stops), never up, and a cut that helped lowers it to the rate seen after the
  cut, so knowledge that went stale fades and persistent random throttling is re-learned the
  same way. (It used to decay by 1% per window whatever the windows said: at 20% random
  throttles the background learned as 0.155 fell to 0.11 in 40 windows while every window still
  showed ~0.2, so the threshold sank towards the true rate and random excursions cut the limit
  again. Windows never raise it: a rate below the threshold may be our own doing, e.g. a limit
  a permit over a cap, and ratcheting up on it would hide the cap.)
- **Starving calls.** Throttled calls back off exponentially while holding their permit, so a
  limit a little above a hard cap can look healthy: the extra permits sleep ever longer and are
  rarely throttled. A call throttled 4 times in a row under the current limit takes one permit
  off, at most once per window, unless the background rate makes that likely by chance (more
  than once per 100 windows: off above a background of ~13% at a window of 32).
- **Increase** only when the limit was reached in the window (otherwise the window says nothing
  about more concurrency), and not while a cut is under test: x1.5 per window until the first
  decrease (slow start, resumed when a cut is undone), then +1/8 per window. Below the limit that
  last failed (`w_max`, as in CUBIC) it climbs back one permit per window to one under it and
  holds there for 1, 2, 4 ... 16 windows (doubling each time a probe fails) before probing it
  again. A probe that fails goes back to the level it started from, whatever share of permits its
  window saw throttled: which permit is throttled varies (whichever call finds the upstream
  full), so one permit too many can show as two or three, and cutting by that share took a cap of
  16 from 17 to 15 after most failed probes (the gateway's DEBUG log against the emulator), 3
  windows or more below the cap each time. A probe that passes moves `w_max` one permit up at a
  time, each step held for 4 windows: an RPM bucket's burst hides an overload for a window or
  two, and forgetting `w_max` there (then +1/8 per window, or halfway back at once) drained the
  burst and ended in a run of throttles every ~2 s (6% of calls at a quota of 9,000/min; 4.7% in
  the simulation with these rules). So against a hard cap it sits at the cap and probes above it
  now and then, and if the capacity grows it follows, a permit every 4 windows.
- **Pacing.** A limit on calls in flight moves in whole calls, each worth 1/latency calls a
  second: at ~45 ms a call, 6 carry ~133/s and 7 ~155/s, so a quota of 150/s sits between two
  limits. The limiter then alternates: at 6 it wastes a tenth of the quota while the quota's
  bucket refills, at 7 or 8 the bucket's burst hides the overload for a window or two (the probe
  passes) and then drains into throttles (4-5% of calls). So once throttling has been shown to be
  ours (a cut helped since the background was last learned), throttling that becomes sustained
  again at or under the level that last failed (`w_max`: a failed probe, or a burst running out)
  is answered with a pace instead of a cut: the limit keeps its permit and attempts are spaced out
  (engine/pacer.py) to 97% of that window's goodput (what the upstream let through while
  throttling) or of the last healthy window's if that was more (against a cap the throttled calls'
  backoffs hide a tenth of its rate). That is, when a pace can beat the cut: if the last healthy
  window, at a lower limit, carried as much as the pace would start at, the limit is cut as
  without a pace. Against a hard cap the level under it carries the cap's whole rate, so pacing
  there only spaced out calls the cap had room for: against 16 in flight x 100 ms the pace's
  sawtooth (143-160 calls/s) carried 94.9% of the ceiling and 96.2-96.5% without it (the
  emulator, one gateway, 4 runs each). A healthy window at the limit that is now throttled does
  not count: a quota's burst kept it clean (without this rule, against 9,000/min the limit fell
  from 7 to 6 and probed 7 again before pacing: 46-81 throttled calls in 1,500, against 37-69).
  In a simulation of quotas between two limits (45-160 ms a call, bursts of 3-50) the rule
  kept 99.5% of the quota against 99.4%, at 1.0% of calls throttled against 0.7%. Each full
  window then steers the pace: down by the excess throttle rate (3% at least, at most half) when
  the window was throttled beyond what the
  background explains (`_Z` standard errors; with no background, any throttle), and the window
  after that is not judged (its attempts were paced before the fall); up 1% after a clean window
  in which it bound (attempts went out at 90% of it or more); after `_PACE_IDLE` windows in a row
  in which it did not bind, pacing stops and the limit may probe a permit more (capacity grew, or
  demand fell); and when the last `_PACE_FUTILE` judged windows pooled were throttled more than
  the tolerance over the background, the throttles are not ours: pacing stops and their rate
  becomes the background (a pace keeps a quota's throttles to a trickle, one in a few windows;
  random throttles go on at any pace). Random throttles start a pace only when a chance verdict
  took a cut for help (in process, 1 run in 8 at 20%: the pace then fell with them, 613 -> 503/s
  in one step, until this rule). Throttling heavy enough to close a window early ends pacing and
  cuts as above. The limit does not grow while pacing: the pace binds, not it. Every attempt takes
  a slot, retries included (`paced`, awaited by the scheduler before each). Against 9,000/min at
  40 ms (the scheduler in process, 1,500 calls a run) this carried 96.8-100.3% of the quota with
  2.5-4.1% of calls throttled over 6 runs (the 4 whose first restore was refuted paid ~15
  throttles for it), where the limit alone carried 97.3-97.8% with 4.8-5.3% over 3; at 20% random
  throttles 345-410 calls/s over 8 runs (277-390 before).
- **A restore is tested too.** The windows back at the restored limit test it: if the first one,
  or the first two pooled, were throttled more than `_Z` standard errors over the background just
  learned, the throttles were ours after all and the background goes back to what it was. A
  quota's burst flatters the window a first cut is compared with: against 9,000/min at 40 ms the
  limit went 16 -> 10 at 0.41 and 0.38 throttled, was restored to 16 with 0.38 learned, and
  then held over the quota at ~50% of calls throttled for the rest of the run (the threshold
  over that background was 0.63).

These rules were tuned on a discrete-event simulation of permits, attempts and backoffs (not part
of the repository) against a concurrency cap, an RPM token bucket and random throttles, with and
without a CPU-bound gateway, then checked against the emulator (tests/benchmarks/
test_bedrock_fanout.py; figures in docs/benchmarks.md). Every window's figures and decision are
logged at DEBUG (`onespace.engine.limiter`).

Throttled calls are retried by the provider with jittered exponential backoff while holding their
permit, so retries never exceed the limit and never storm (see providers/bedrock/retry.py). The
exception is a call throttled while more permits are out than the limit (it was just cut): its
retry would most likely meet the same full upstream, so it gives its permit back, takes its
backoff without one, and queues first for the next (`over_limit`, `acquire(first=True)`; the
engine's scheduler does this): the retry goes out when a call has finished rather than into the
cap again, and still after the pause a quota's bucket needs to refill. Against a cap of 16 at
250 ms, slow start's overshoot to 24 cost ~40 throttles per run before this (the 8 permits over
the cut kept retrying into the cap, each backoff longer than the last).

Owned by the event loop (no locks): permits are handed to waiters in FIFO order; every decision is
made synchronously in `release`/`throttled`, and time comes from an injectable `clock`, so tests
drive it event by event without sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from onespace.engine.pacer import Pacer

__all__ = ["AdaptiveLimiter", "Permit"]

log = logging.getLogger(__name__)

_Z = 3.0  # standard errors above the background a window's rate may reach without counting
_EARLY_MIN = 8  # outcomes before a window may close early
_MAX_HOLD = 16  # windows to wait before probing w_max again, at most
_DECAY = 0.99  # ... per window, the background keeps this share of its excess over the window's rate
_Z_CHANGE = 2.0  # standard errors by which two windows' rates must differ to count as different
_KEPT = 0.9  # ... a cheaper success counts only if at least this share of the goodput was kept
_COST_WORSE = 1.3  # ... and conditions changed if the cost of a success rose by this factor
_CONTRAST = 0.25  # ... and it did not help if neither fell after cutting this share of the limit
_STARVING = 4  # throttles of one call in a row that say the limit is above the upstream's capacity
_STARVING_ODDS = 0.01  # ... unless the background makes one such call per 100 windows likely
_PASSED_HOLD = 4  # windows to hold each permit gained above a probe that passed
_PACE_UP = 1.01  # a pace that bound and was not throttled rises this much per window
_PACE_DOWN = 0.97  # ... and falls this much when a window saw throttles beyond the background
_PACE_IDLE = 4  # windows in a row in which the pace did not bind before pacing stops
_RESTORE_TEST = 2  # windows after a restore that may refute it
_PACE_BINDS = 0.9  # the pace binds while attempts go out at this share of it, at least
_PACE_FUTILE = 8  # judged windows whose pooled throttle rate tells whether pacing helps


@dataclass(slots=True, eq=False)
class Permit:
    epoch: int
    released: bool = False
    throttles: int = 0  # throttles reported while it was held
    streak: int = 0  # ... of which under the current limit (the count restarts when it changes)
    streak_epoch: int = -1
    window: int = -1  # the window it was last counted as a throttled permit in


@dataclass(slots=True)
class _Series:
    """Cuts under test: the state to restore, and the full window they are compared with (a series
    opened by an early close, too small a sample to compare with, takes the first full window)."""

    limit: float
    w_max: int | None
    hold: int
    slow_start: bool
    base_limit: float = 0.0
    base_rate: float = 0.0
    base_outcomes: int = 0
    base_cost: float = math.inf
    base_goodput: float = 0.0
    based: bool = False

    def base(self, limit: float, rate: float, outcomes: int, cost: float, goodput: float) -> None:
        self.base_limit, self.base_rate, self.base_outcomes = limit, rate, outcomes
        self.base_cost, self.base_goodput = cost, goodput
        self.based = True


def _difference(rate: float, n: int, other: float, m: int) -> float:
    """How far apart two windows' throttle rates may be by chance (`_Z_CHANGE` standard errors)."""
    pooled = (rate * n + other * m) / (n + m)
    return _Z_CHANGE * math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / m))


class AdaptiveLimiter:
    def __init__(
        self,
        initial: int,
        floor: int,
        ceiling: int,
        on_change: Callable[[int], None] | None = None,
        *,
        on_pace: Callable[[float], None] | None = None,
        window: int = 32,
        tolerance: float = 0.05,
        max_background: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= floor <= ceiling:
            raise ValueError(f"need 1 <= floor ({floor}) <= ceiling ({ceiling})")
        if window < 1 or not 0.0 < tolerance < 1.0 or not 0.0 <= max_background < 1.0:
            raise ValueError("need window >= 1, 0 < tolerance < 1 and 0 <= max_background < 1")
        self.floor = floor
        self.ceiling = ceiling
        self.window = window
        self.tolerance = tolerance
        self.max_background = max_background
        self._clock = clock
        self._limit = float(min(max(initial, floor), ceiling))
        self._in_flight = 0
        self._epoch = 0
        self._waiters: deque[asyncio.Future[Permit]] = deque()
        self._on_change = on_change
        self._on_pace = on_pace
        self.pacer = Pacer(clock=clock)
        self._ours = False  # a cut helped since the background was last learned: see Pacing
        self._unlearn: float | None = None  # the background before the last restore, while it is tested
        self._since_restore = [0, 0, 0]  # windows, outcomes and throttles since the last restore
        self._pace_quiet = 0  # windows to wait before judging the pace again (it just fell)
        self._pace_idle = 0  # windows in a row in which the pace did not bind
        self._pace_judged: deque[tuple[int, int]] = deque(maxlen=_PACE_FUTILE)  # (outcomes, throttles)
        self._held_goodput = 0.0  # the goodput of the last healthy saturated window
        self._held_level = 0  # ... and the limit it had
        # the current window: outcomes of permits issued under the current limit
        self._ok = 0
        self._throttled = 0
        self._throttled_permits = 0  # how many permits the throttles came from
        self._saturated = False
        # and its cost by Little's law: permit-seconds held / calls that succeeded (any permit),
        # measured from the first permit issued under the current limit
        self._measuring = False
        self._stamp = 0.0
        self._since = 0.0
        self._area = 0.0
        self._done = 0
        # what the windows have taught
        self._slow_start = True
        self._grown_from: int | None = None  # the level slow start's last raise left (its next window only)
        self._background = 0.0
        self._w_max: int | None = None
        self._hold = 1  # windows to hold one under w_max before probing it
        self._probed_from: int | None = None  # the held level a probe of one permit more started from
        self._held = 0
        self._series: _Series | None = None
        self._chain: tuple[float, int | None, int, bool] | None = None  # state before a run of cuts
        self._starved_in = -1  # the window count at the last starving decrease
        # counters (for metrics, tests and the benchmark)
        self.decreases = 0
        self.restores = 0
        self.increases = 0
        self.windows = 0
        self.peak_in_flight = 0
        self._changed()

    # --- state ---------------------------------------------------------------------------------
    @property
    def limit(self) -> int:
        return int(self._limit)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def background(self) -> float:
        """The throttle rate learned not to depend on our concurrency."""
        return self._background

    @property
    def w_max(self) -> int | None:
        """The limit at which throttling last became sustained (None once a probe passed it)."""
        return self._w_max

    @property
    def testing(self) -> bool:
        """Whether a decrease is under test (the next full window decides whether it helped)."""
        return self._series is not None

    @property
    def pace(self) -> float | None:
        """Attempts per second the calls are spaced to, or None (see Pacing)."""
        return self.pacer.rate

    @property
    def over_limit(self) -> bool:
        """Whether more permits are out than the limit (it was cut while they were held)."""
        return self._in_flight > self.limit

    def threshold(self, outcomes: int) -> float:
        """The throttle rate over `outcomes` attempts above which throttling counts as sustained."""
        b = self._background
        noise = _Z * math.sqrt(b * (1.0 - b) / max(outcomes, 1))
        return b + max(self.tolerance, noise)

    # --- permits -------------------------------------------------------------------------------
    def _account(self) -> None:
        now = self._clock()
        if self._measuring:
            self._area += self._in_flight * (now - self._stamp)
            if self._in_flight == 0:  # idle time says nothing about the upstream: not counted
                self._since += now - self._stamp
        self._stamp = now

    def _take(self) -> Permit:
        self._account()
        if not self._measuring:  # the first permit under a new limit: the old ones have drained
            self._measuring, self._area, self._done, self._since = True, 0.0, 0, self._stamp
        self._in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        if self._in_flight >= self.limit:
            self._saturated = True
        return Permit(self._epoch)

    async def acquire(self, *, first: bool = False) -> Permit:
        """A permit, when one is free; waiters are served in order, `first` ones before the rest
        (a call that gave its permit back to retry: its callers have waited longest)."""
        if self._in_flight < self.limit and (first or not self._waiters):
            return self._take()
        self._saturated = True
        waiter: asyncio.Future[Permit] = asyncio.get_running_loop().create_future()
        if first:
            self._waiters.appendleft(waiter)
        else:
            self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(waiter.result())  # handed over just as we were cancelled
            else:
                waiter.cancel()
            raise

    async def paced(self) -> None:
        """Wait for the pace to allow the next attempt (at once when not pacing); call it before
        every attempt, retries included, while holding the permit."""
        await self.pacer.wait()

    def throttled(self, permit: Permit) -> None:
        """One attempt of the call holding `permit` was throttled (it may be retried)."""
        permit.throttles += 1
        if permit.streak_epoch != self._epoch:
            permit.streak, permit.streak_epoch = 0, self._epoch
        permit.streak += 1
        if (
            permit.streak >= _STARVING
            and self._background**_STARVING * max(self.window, self.limit) < _STARVING_ODDS
            and self.windows > self._starved_in
        ):
            self._starving()  # once per window: one decision per look at the evidence
            return
        if permit.epoch == self._epoch and self._in_flight <= self.limit:
            self._throttled += 1
            if permit.window != self.windows:
                permit.window = self.windows
                self._throttled_permits += 1
            self._maybe_close()

    def release(self, permit: Permit, *, throttled: bool = False, succeeded: bool = False) -> None:
        """Return a permit. `succeeded`: its call returned (one successful attempt); `throttled`:
        it failed with a throttle (counted unless `throttled()` already reported one); neither:
        it failed otherwise or was not used, which says nothing about capacity."""
        if permit.released:
            return
        permit.released = True
        self._account()
        self._in_flight -= 1
        if throttled and permit.throttles == 0:
            self.throttled(permit)
        elif succeeded:
            self._done += 1
            if permit.epoch == self._epoch and self._in_flight < self.limit:
                self._ok += 1
                self._maybe_close()
        self._hand_over()

    def _hand_over(self) -> None:
        while self._waiters and self._in_flight < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(self._take())

    # --- decisions -----------------------------------------------------------------------------
    def _maybe_close(self) -> None:
        size = max(self.window, self.limit)
        n = self._ok + self._throttled
        if n >= size:
            self._close(early=False)
        elif n >= _EARLY_MIN and (
            self._throttled > max(self.threshold(size), self.max_background) * size
            or (n <= self.limit and self._throttled_permits > self.max_background * self.limit)
            or (n <= self.limit and self._overshot())
        ):
            # heavy throttling, no need to wait for the rest of the window: over half of it is
            # throttled even if every other outcome succeeds, or, within the first round, over
            # half the permits were (only heavy: a throttle comes back at once and is retried
            # soon, a success after the call's latency, so a window's first outcomes
            # over-represent throttles), or slow start's last raise overshot
            self._close(early=True)

    def _overshot(self) -> bool:
        """Slow start's last raise went past what the upstream admits: within the first round
        after it, more permits were throttled than the background explains plus half of those
        the raise added. (Waiting for a heavily throttled window instead let the added permits
        retry into a cap of 16 about 17 times before the cut: ~5% of a 700-call run.)"""
        if self._grown_from is None:
            return False
        added = self.limit - self._grown_from
        return self._throttled_permits >= self._background * self.limit + max(2, (added + 1) // 2)

    def _close(self, *, early: bool) -> None:
        self._grown_from = None  # only the first window after a raise can tell it overshot
        n = self._ok + self._throttled
        rate = self._throttled / n
        excess = min(rate, self._throttled_permits / max(self.limit, 1))  # permits, not attempts
        if self._unlearn is not None:
            self._test_restore(n)
        sustained = early or rate > self.threshold(n)
        self._account()
        cost = self._area / self._done if self._done else math.inf
        elapsed = max(self._stamp - self._since, 1e-9)
        goodput = self._done / elapsed
        saturated = self._saturated
        delayed, self.pacer.delayed = self.pacer.delayed, 0
        sent, self.pacer.taken = self.pacer.taken, 0
        pace = self.pacer.rate
        binding = pace is not None and sent / elapsed >= _PACE_BINDS * pace
        self._ok = self._throttled = self._done = self._throttled_permits = 0
        self._area = 0.0
        self._since = self._stamp
        self._saturated = False
        self.windows += 1
        self._background -= (1.0 - _DECAY) * max(0.0, self._background - rate)
        series = self._series
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "window %d: %d outcomes%s, throttled %.3f (threshold %.3f, background %.3f), cost %.1f ms, "
                "goodput %.1f/s, limit %d%s%s",
                self.windows,
                n,
                " (early)" if early else "",
                rate,
                self.threshold(n),
                self._background,
                cost * 1e3,
                goodput,
                self.limit,
                " saturated" if saturated else "",
                f", testing a cut from {series.limit:.0f}" if series else "",
            )
            if self.pacer.rate is not None:
                log.debug(
                    "  pace %.1f/s, %.1f attempts/s, %d held back", self.pacer.rate, sent / elapsed, delayed
                )
        if self.windows == 1 and not early:
            return  # the first window ramps up (connections, callers arriving): a poor reference
        if series is not None and not early and not series.based:
            series.base(self._limit, rate, n, cost, goodput)
        elif series is not None and not early:  # an early close is too small a sample to judge by
            cut = 1.0 - self._limit / series.base_limit
            base = series.base_rate
            change = _difference(rate, n, base, series.base_outcomes)
            cheaper = (
                cut >= _CONTRAST
                and cost < series.base_cost * (1.0 - cut / 2)
                and goodput >= _KEPT * series.base_goodput
            )
            if rate < base - change or cheaper:  # it helped
                self._series = None
                self._background = min(self._background, rate)
                self._ours = True
            elif rate > base + change or cost > series.base_cost * _COST_WORSE:
                # throttling, or the cost of a success, grew although the limit fell: conditions
                # changed under the test (a quota's burst ran out, say); no verdict, judge afresh
                self._series = None
            elif cut >= _CONTRAST and rate <= self.max_background:
                # cutting did not help: not our doing; the background is both windows' rate
                m = series.base_outcomes
                self._restore(series, (base * m + rate * n) / (m + n))
                return
            elif not sustained:  # too small a cut to tell, and no longer needed
                self._series = None
        if self.pacer.rate is not None:
            if not early:
                self._steer_pace(rate, n, binding)
                return
            self._set_pace(None)  # heavy throttling at a pace: cut as without one
        elif (
            sustained
            and not early
            and series is None
            and self._ours
            and self.limit <= (self._w_max or 0)
            and goodput * _PACE_DOWN > (self._held_goodput if self._held_level < self.limit else 0.0)
        ):
            self._start_pacing(max(goodput, self._held_goodput))  # at or over a level that failed: see Pacing
            return
        if sustained:
            self._decrease(excess - self._background, rate, n, cost, goodput, early)
            return
        self._chain = None
        self._probed_from = None  # a probe that got through a window passed it
        if saturated and not early:
            self._held_goodput, self._held_level = goodput, self.limit
        if saturated and self._series is None:
            self._increase()

    def _decrease(self, excess: float, rate: float, n: int, cost: float, goodput: float, early: bool) -> None:
        level = self.limit
        cut = max(1, round(level * min(0.5, max(excess, 0.0))))  # at least one permit
        if self._series is None:
            # a new test; while every window since the last healthy one was over the threshold,
            # an undo goes back to before the first of those cuts
            start = self._chain or (self._limit, self._w_max, self._hold, self._slow_start)
            self._chain = start
            self._series = _Series(*start)
            if not early:
                self._series.base(self._limit, rate, n, cost, goodput)
                if not self._ours and start[1] is None:  # no level had failed: see "The first cut"
                    cut = max(cut, math.ceil(level * _CONTRAST))
        self._cut(level - cut)

    def _starving(self) -> None:
        """A call throttled `_STARVING` times in a row: its permit mostly sleeps in backoff while the
        others keep the upstream's slots busy, so the windows see few throttles, yet the limit is
        above what the upstream admits. One permit less (the background cannot explain it)."""
        self._starved_in = self.windows
        self._cut(self.limit - 1)

    def _cut(self, new: int) -> None:
        level = self.limit
        if self._probed_from is not None:  # a failed probe: back to the level that held (see Increase)
            new = max(new, self._probed_from)
        if max(new, self.floor) >= level:
            return
        if self._w_max is not None and level >= self._w_max:
            self._hold = min(_MAX_HOLD, self._hold * 2)  # the probe failed again: wait longer
        self._w_max = level
        self._held = 0
        self._slow_start = False
        self._set(float(new))
        self.decreases += 1

    def _test_restore(self, n: int) -> None:
        """The windows after a restore test it (see "A restore is tested too")."""
        tally = self._since_restore
        tally[0] += 1
        tally[1] += n
        tally[2] += self._throttled
        learned = self._background
        pooled = tally[2] / tally[1]
        if pooled > learned + _Z * math.sqrt(learned * (1.0 - learned) / tally[1]):
            assert self._unlearn is not None
            log.debug("restore refuted (%.3f): background back to %.3f", pooled, self._unlearn)
            self._background, self._ours, self._unlearn = self._unlearn, True, None
        elif tally[0] >= _RESTORE_TEST:
            self._unlearn = None

    def _restore(self, series: _Series, rate: float) -> None:
        self._series = self._chain = None
        self._unlearn, self._since_restore = self._background, [0, 0, 0]
        self._background = max(self._background, min(rate, self.max_background))
        self._ours = False
        self._w_max, self._hold, self._held = series.w_max, series.hold, 0
        self._slow_start = series.slow_start
        self._set(series.limit)
        self.restores += 1

    def _increase(self) -> None:
        level = self.limit
        if level >= self.ceiling:
            return
        if self._slow_start:
            target = max(level * 1.5, level + 1.0)
            self._grown_from = level
        elif self._w_max is None:
            target = float(level + max(1, level // 8))
        elif level + 1 < self._w_max:  # climb back to one under w_max, a permit per window
            target = float(level + 1)
        elif level + 1 > self._w_max:  # a probe at w_max passed: capacity is not where it was,
            # but a quota's burst can hide an overload for a window or two: go on a permit at a
            # time, each held like a probe, until one fails again
            self._w_max, self._hold, self._held = level + 2, _PASSED_HOLD, 0
            target = float(level + 1)
            self._probed_from = level
        else:  # one under w_max: hold, then probe it
            self._held += 1
            if self._held < self._hold:
                return
            self._held = 0
            target = float(level + 1)
            self._probed_from = level
        self._limit = min(float(self.ceiling), target)
        self.increases += 1
        if self.limit != level:
            self._changed()
            self._hand_over()

    # --- pacing --------------------------------------------------------------------------------
    def _start_pacing(self, goodput: float) -> None:
        """Throttling became sustained at a level no higher than one that failed before: keep the
        limit, and space the calls out to a little under `goodput` (what the upstream let through
        while it throttled, or in the healthy window before if that was more: against a cap the
        throttled calls' backoffs hide a tenth of its rate), from where the pace feels its way."""
        self._probed_from = None
        self._w_max, self._held = self.limit, 0
        self._slow_start = False
        self._pace_quiet = self._pace_idle = 0
        self._pace_judged.clear()
        self._set_pace(goodput * _PACE_DOWN)

    def _steer_pace(self, rate: float, n: int, binding: bool) -> None:
        """Feel for the upstream's rate: up while the pace binds (attempts go out at it) and
        nothing is throttled, down when a window is throttled beyond what the background explains
        (by the excess, at least `_PACE_DOWN`); stop pacing when it no longer binds (the limit or
        the demand does: a permit more may be worth a probe), or when throttling went on whatever
        the pace (`_PACE_FUTILE` judged windows pooled over the tolerance)."""
        assert self.pacer.rate is not None
        if self._pace_quiet > 0:  # the window after a fall still saw attempts paced before it
            self._pace_quiet -= 1
            return
        b = self._background
        judged = self._pace_judged
        judged.append((n, round(rate * n)))
        pooled = sum(t for _, t in judged) / sum(m for m, _ in judged)
        if len(judged) == _PACE_FUTILE and pooled > b + self.tolerance:
            # a pace keeps a quota's throttles to a trickle (a window in a few throttled once);
            # throttles this steady go on whatever the pace: random ones a chance verdict took
            # for ours (the pace then fell window after window)
            self._set_pace(None)
            self._ours = False
            self._background = max(b, min(pooled, self.max_background))
            log.debug("throttled at %.3f whatever the pace: pacing ends", pooled)
            return
        if rate > b + _Z * math.sqrt(b * (1.0 - b) / n):
            self._set_pace(self.pacer.rate * min(_PACE_DOWN, max(0.5, 1.0 - (rate - b))))
            self._pace_quiet, self._pace_idle = 1, 0
            return
        if binding:
            self._set_pace(self.pacer.rate * _PACE_UP)
            self._pace_idle = 0
        else:
            self._pace_idle += 1
            if self._pace_idle >= _PACE_IDLE:
                self._set_pace(None)
                self._w_max, self._hold, self._held = self.limit + 1, _PASSED_HOLD, 0

    def _set_pace(self, rate: float | None) -> None:
        self.pacer.rate = None if rate is None else min(rate, 1e6)
        if self._on_pace is not None:
            self._on_pace(self.pacer.rate or 0.0)

    def _set(self, value: float) -> None:
        before = self.limit
        self._limit = min(float(self.ceiling), max(float(self.floor), value))
        self._epoch += 1  # outcomes of permits issued before now describe the old limit
        self._probed_from = None
        self._grown_from = None
        self._measuring = False
        self._ok = self._throttled = self._throttled_permits = 0  # a window begun under it too
        if self.limit != before:
            self._changed()
        self._hand_over()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.limit)
