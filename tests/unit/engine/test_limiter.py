"""The adaptive limiter, driven event by event: permits are taken and released by hand and time comes
from a fake clock, so every window closes exactly when the test says (no sleeps, no wall clock)."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque

import pytest

from onespace.engine.limiter import AdaptiveLimiter, Permit
from tests.clock import FakeClock


class Upstream:
    """Keeps `in_flight` permits busy (at most the limit) and finishes them one at a time, the oldest
    first, each outcome `seconds` after the previous one, a share `rate` of them throttled (spread
    evenly). Throttles are reported like the Bedrock provider does: `throttled()` and, for a call
    that gives up, `release(throttled=True)`; here every throttled call gives up. Each call takes
    its slot from the limiter's pace when it is taken (the clock moves on by the wait)."""

    def __init__(self, limiter: AdaptiveLimiter, clock: FakeClock) -> None:
        self.limiter, self.clock = limiter, clock
        self.held: deque[Permit] = deque()
        self.outcomes = 0
        self.throttles = 0

    async def fill(self, in_flight: int) -> None:
        while len(self.held) < in_flight and self.limiter.in_flight < self.limiter.limit:
            self.held.append(await self.limiter.acquire())
            self.clock.now += self.limiter.pacer.reserve()  # waiting for its slot

    async def window(self, rate: float, *, seconds: float = 0.01, in_flight: int | None = None) -> int:
        """Run until the limiter closes one window; returns the limit after it."""
        closed = self.limiter.windows
        while self.limiter.windows == closed:
            await self.fill(in_flight or self.limiter.limit)
            self.clock.now += seconds
            permit = self.held.popleft()
            self.outcomes += 1
            if int(self.outcomes * rate) > int((self.outcomes - 1) * rate):
                self.throttles += 1
                self.limiter.throttled(permit)
                self.limiter.release(permit, throttled=True)
            else:
                self.limiter.release(permit, succeeded=True)
        return self.limiter.limit


async def limiter(initial: int, *, floor: int = 1, ceiling: int = 64) -> tuple[AdaptiveLimiter, Upstream]:
    """A limiter past its first window (a ramp-up the limiter learns nothing from)."""
    clock = FakeClock()
    lim = AdaptiveLimiter(initial, floor, ceiling, clock=clock)
    up = Upstream(lim, clock)
    await up.window(0.0)
    while up.held:  # start from nothing in flight
        lim.release(up.held.popleft())
    assert lim.windows == 1 and lim.limit == min(max(initial, floor), ceiling) and lim.in_flight == 0
    return lim, up


async def test_a_throttle_now_and_then_does_not_cut_the_limit() -> None:
    lim, up = await limiter(20, ceiling=20)
    for _ in range(10):
        assert await up.window(0.03) == 20  # 1 throttle in 32: noise under the 5% tolerance
    assert lim.decreases == 0 and up.throttles > 0


async def test_sustained_throttling_cuts_by_the_excess_not_by_half() -> None:
    lim, up = await limiter(20, ceiling=20)
    # 40% throttled over a full window: the limit falls by about the excess (8 permits), not by half
    assert await up.window(0.4) == 12
    assert lim.decreases == 1 and lim.w_max == 20 and lim.testing


async def test_a_first_cut_is_a_quarter_at_least_so_one_window_can_judge_it() -> None:
    lim, up = await limiter(20, ceiling=20)
    # 12.5% throttled: over the 5% tolerance; the excess is 2 permits, but nothing says yet
    # whether the throttles are ours, and a cut of less than a quarter could not tell
    assert await up.window(0.125) == 15
    assert lim.decreases == 1 and lim.w_max == 20 and lim.testing
    assert await up.window(0.0) == 16  # the throttles fell: the cut helped; it climbs back ...
    assert not lim.testing
    for level in (17, 18, 19, 20):
        assert await up.window(0.0) == level  # ... a permit per window, and probes the level that failed
    assert lim.restores == 0 and lim.background == 0.0


async def test_a_new_test_in_the_same_run_of_cuts_still_takes_a_quarter() -> None:
    lim, up = await limiter(32, ceiling=32)
    assert await up.window(0.2, seconds=0.01) == 24  # a quarter: nothing had failed before
    # the cost of a success grew fivefold under the test: conditions changed, no verdict; the
    # throttling goes on, so a new test starts within the same run of cuts, again by a quarter
    # (by the excess, 15%, it would be 20)
    assert await up.window(0.15, seconds=0.05) == 18
    assert lim.restores == 0 and lim.testing


async def test_once_a_level_has_failed_a_first_cut_goes_by_the_excess() -> None:
    lim, up = await limiter(16, ceiling=64)
    assert await up.window(0.0) == 24  # slow start
    while up.held:
        lim.release(up.held.popleft(), succeeded=True)
    held = [await lim.acquire() for _ in range(24)]
    for permit in held[16:]:  # the raise overshot a cap of 16: its 8 permits are throttled at once
        lim.throttled(permit)
    assert lim.limit < 24 and lim.w_max == 24
    for permit in held:
        lim.release(permit, succeeded=True)
    while lim.testing:
        await up.window(0.0)
    level = lim.limit
    # capacity is known to lie under 24: 12.5% throttled cuts by the excess, not by a quarter
    assert await up.window(0.125) == level - round(level * 0.125)


async def test_random_throttles_are_learned_and_the_cut_undone() -> None:
    lim, up = await limiter(32, ceiling=32)
    # 20% throttled whatever the limit, and a success costs the same permit-time at any limit
    # (the time between outcomes shrinks as more permits work): cutting cannot help
    limits = [await up.window(0.2, seconds=0.32 / lim.limit) for _ in range(6)]
    assert lim.restores == 1 and lim.limit == 32, limits
    assert limits[:2] == [24, 32]  # cut by a quarter, and undone by the next window
    assert 0.15 <= lim.background <= 0.25
    decreases = lim.decreases
    for _ in range(30):
        assert await up.window(0.2, seconds=0.01) == 32
    assert lim.decreases == decreases  # the background is not a reason to cut any more


async def test_a_quota_that_binds_is_followed_down_even_if_the_rate_falls_slowly() -> None:
    # an RPM bucket: successes arrive at the quota's pace whatever the limit (the time between
    # outcomes is fixed), so the cost of a success falls with the limit, while the throttle rate
    # barely moves (throttled calls mostly sleep in backoff)
    lim, up = await limiter(32, ceiling=32)
    limits = [await up.window(rate, seconds=0.01) for rate in (0.5, 0.45, 0.45, 0.4)]
    assert limits == sorted(limits, reverse=True) and limits[-1] <= 8, limits
    assert lim.restores == 0 and lim.background == 0.0


async def test_a_restore_refuted_by_its_first_window_unlearns_the_background() -> None:
    # a first window that spent a quota's burst looks better than the quota is (0.41 throttled
    # at 16), so the cut to 10 (0.31: still over the quota) looks like no help and is undone,
    # learning 0.36 as background; back at 16 the throttles are heavy at once: the restore was
    # wrong, the background goes back to what it was, and the limit is cut again
    lim, up = await limiter(16, ceiling=16)
    assert await up.window(0.41, seconds=0.002) == 10
    assert await up.window(0.31, seconds=0.0035) == 16
    assert lim.restores == 1 and lim.background == pytest.approx(23 / 64)  # both windows' rate
    assert await up.window(0.85) < 16
    assert lim.background == 0.0 and lim.testing


async def test_no_undo_when_conditions_changed_under_the_test() -> None:
    # a quota's burst runs out just after the first cut: throttling and the cost of a success
    # grow although the limit fell; that says nothing about the cut, so it is not undone
    lim, up = await limiter(32, ceiling=32)
    assert await up.window(0.25, seconds=0.004) < 32
    cut = lim.limit
    await up.window(0.3, seconds=0.05)
    await up.window(0.3, seconds=0.05)
    assert lim.restores == 0 and lim.limit < cut and lim.background == 0.0


async def test_heavy_throttling_closes_windows_early_and_keeps_cutting_to_the_floor() -> None:
    lim, up = await limiter(32, ceiling=32)
    windows, before = 0, up.outcomes
    while lim.limit > 1:
        await up.window(1.0)
        windows += 1
    assert windows <= 8 and lim.restores == 0  # halves, never taken for a background
    assert up.outcomes - before < 32 * windows  # early closes: no full window of throttles needed


async def test_outcomes_of_permits_issued_before_a_cut_do_not_count() -> None:
    lim, _ = await limiter(20, ceiling=20)
    old = [await lim.acquire() for _ in range(20)]
    for permit in old[:17]:  # heavy throttling: the window closes early, the limit halves
        lim.throttled(permit)
        lim.release(permit, throttled=True)
    assert lim.limit == 10 and lim.decreases == 1 and lim.windows == 2
    for permit in old[17:]:  # issued under the old limit: they say nothing about the new one
        lim.throttled(permit)
        lim.release(permit, throttled=True)
    assert lim.limit == 10 and lim.decreases == 1 and lim.windows == 2


async def test_a_cut_is_the_share_of_permits_throttled_not_of_attempts() -> None:
    # 8 permits over a cap of 16 are throttled again and again before the first success is back
    lim, _ = await limiter(24, ceiling=64)
    held = [await lim.acquire() for _ in range(24)]
    for _ in range(3):
        for permit in held[16:]:
            lim.throttled(permit)
    # over half of a window throttled whatever follows: it closes early, and cuts the 8 permits
    assert lim.windows == 2 and lim.limit == 16  # 24 - 24 * 8/24, not halved by a 100% rate


async def test_a_starving_call_takes_one_permit_off_once_per_window() -> None:
    lim, up = await limiter(17, ceiling=32)
    await up.fill(17)
    starving = up.held.popleft()
    for _ in range(3):
        lim.throttled(starving)
    assert lim.limit == 17
    lim.throttled(starving)  # the 4th in a row: the limit is above what the upstream admits
    assert lim.limit == 16 and lim.w_max == 17
    lim.throttled(starving)
    assert lim.limit == 16  # once per window
    lim.release(starving, succeeded=True)


async def test_the_limit_grows_only_when_it_is_reached() -> None:
    lim, up = await limiter(8, ceiling=64)
    for _ in range(5):
        assert await up.window(0.0, in_flight=4) == 8  # demand below the limit: nothing learned
    assert await up.window(0.0) == 12  # reached: slow start, x1.5 per window
    assert await up.window(0.0) == 18
    assert lim.increases == 2


def capped(lim: AdaptiveLimiter, cap: int = 16, latency: float = 0.16) -> float:
    """The throttle rate a cap of `cap` calls gives: the calls over it are throttled, and retried
    (twice a round, say); with a pace, `pace x latency` calls are in flight at most."""
    busy = lim.limit if lim.pace is None else min(lim.limit, lim.pace * latency)
    return min(1.0, 2 * max(0.0, busy - cap) / busy)


def quota(lim: AdaptiveLimiter, per_second: float = 100.0, latency: float = 0.045) -> tuple[float, float]:
    """A quota of `per_second` calls: `limit / latency` attempts a second (fewer under a pace), the
    share of them over the quota throttled. Returns that share and the seconds between outcomes,
    for `Upstream.window`. At 45 ms a call, 4 in flight carry 89/s and 5 carry 111/s."""
    attempts = lim.limit / latency if lim.pace is None else min(lim.limit / latency, lim.pace)
    return max(0.0, 1.0 - per_second / attempts), 1.0 / attempts


async def paced_by_a_quota() -> tuple[AdaptiveLimiter, Upstream]:
    lim, up = await limiter(16, ceiling=64)
    while lim.pace is None:
        rate, seconds = quota(lim)
        await up.window(rate, seconds=seconds)
        assert lim.windows < 20
    return lim, up


async def test_against_a_hard_cap_it_holds_at_it_and_probes_one_over_ever_less_often() -> None:
    lim, up = await limiter(16, ceiling=64)
    assert await up.window(0.0) == 24  # slow start
    limits = []
    for _ in range(5):
        limits.append(await up.window(capped(lim)))
    # the slow start's overshoot is cut within its first round (by the share of permits
    # throttled so far: 24 -> 18 here, where throttles come evenly; 24 -> 16 when the 8 added
    # permits are all throttled at once, see below), then once more (the cut helped: the
    # throttles are ours), then back up a permit per window to the cap, probing one over
    assert limits == [18, 14, 15, 16, 17], limits
    # 17 fails, and no pace takes over: the windows at 16 carried as much as a pace could
    # (a pace starts a little under what the cap let through while it throttled)
    limits = []
    throttles, outcomes = up.throttles, up.outcomes
    for _ in range(80):
        limits.append(await up.window(capped(lim)))
        assert lim.pace is None
    assert set(limits) <= {15, 16, 17} and limits[-40:].count(16) >= 36, limits
    probes = [i for i, limit in enumerate(limits) if limit == 17]
    gaps = [b - a for a, b in itertools.pairwise(probes)]
    assert gaps == sorted(gaps) and gaps[-1] >= 16, limits  # each failed probe waits longer
    assert up.throttles - throttles < 0.02 * (up.outcomes - outcomes)
    assert lim.restores == 0 and lim.background == 0.0


async def test_against_a_quota_between_two_limits_it_paces_one_over() -> None:
    lim, up = await paced_by_a_quota()
    # 4 in flight waste a tenth of the quota and 5 overrun it: the limit keeps 5 and the pace
    # feels its way to the quota, a throttled window taking 3% off and a clean one adding 1%
    assert lim.limit == 5
    paces = []
    throttles, outcomes = up.throttles, up.outcomes
    for _ in range(60):
        rate, seconds = quota(lim)
        await up.window(rate, seconds=seconds)
        assert lim.pace is not None and lim.limit == 5
        paces.append(lim.pace)
    assert max(paces[-20:]) < 105 and min(paces[-20:]) > 95, paces
    assert up.throttles - throttles < 0.03 * (up.outcomes - outcomes)
    assert lim.restores == 0 and lim.background == 0.0


async def test_windows_that_a_burst_kept_clean_do_not_stop_a_pace() -> None:
    lim, up = await limiter(8, ceiling=64)
    for _ in range(60):  # 5 in flight hold and 6 fail, again and again: w_max is 6
        await up.window(capped(lim, cap=5, latency=0.045), seconds=0.009)
    while lim.limit != 6:
        await up.window(capped(lim, cap=5, latency=0.045), seconds=0.009)
    await up.window(capped(lim, cap=5, latency=0.045), seconds=0.009)
    assert lim.limit == 5 and lim.w_max == 6 and lim.pace is None
    # now a quota of 100/s with 3 calls of burst left: 5 carry 111/s, clean while the burst
    # lasts, then throttled. Those clean windows at 5 say nothing about what 5 carries under
    # the quota, so the limit keeps its 5 and paces, rather than fall to 4 (89/s)
    burst = 3.0
    for _ in range(3):
        rate, seconds = quota(lim)
        start = up.clock.now
        await up.window(0.0 if burst > 0 else rate, seconds=seconds)
        burst = max(0.0, burst - (1 / seconds - 100) * (up.clock.now - start))
        if lim.pace is not None:
            break
    assert lim.limit == 5 and lim.pace is not None and 95 < lim.pace < 112


async def test_a_pace_that_holds_nothing_back_ends_and_the_limit_probes_again() -> None:
    lim, up = await paced_by_a_quota()
    limit = lim.limit
    # the quota goes away: the pace climbs a percent a window while it holds calls back, then
    # stops pacing once it held nothing back for 4 windows, and the limit probes above again
    windows = 0
    while lim.pace is not None:
        await up.window(0.0, seconds=0.045 / min(lim.limit, lim.pace * 0.045))
        windows += 1
    assert windows < 40
    for _ in range(6):
        await up.window(0.0)
    assert lim.limit > limit


async def test_a_pace_throttled_whatever_it_falls_to_ends_and_learns_the_background() -> None:
    lim, up = await paced_by_a_quota()
    # the quota gives way to random throttles (20% at any pace): the pace falls after each window
    # it judges, and the throttles go on; after 8 judged windows pacing ends, 0.2 is background
    for _ in range(24):
        await up.window(0.2)
        if lim.pace is None:
            break
    assert lim.pace is None and lim.background == pytest.approx(0.2, abs=0.03)
    limit = lim.limit
    for _ in range(20):
        await up.window(0.2, seconds=0.32 / lim.limit)
        assert lim.pace is None
    assert lim.limit >= limit  # no cut for the background


async def test_random_throttles_never_start_a_pace() -> None:
    lim, up = await limiter(16, ceiling=64)
    for _ in range(80):  # 20% throttled at any limit; a success costs the same permit-time
        await up.window(0.2, seconds=0.32 / lim.limit)
        assert lim.pace is None
    assert lim.background > 0.1


async def test_a_probe_that_passes_moves_the_ceiling_up_a_permit_at_a_time() -> None:
    lim, up = await limiter(20, ceiling=64)
    assert await up.window(0.1) == 15
    assert lim.w_max == 20
    for level in (16, 17, 18, 19):
        assert await up.window(0.0) == level  # back a permit per window to one under w_max
    assert await up.window(0.0) == 20  # held 1 window: probe w_max
    assert lim.w_max == 20
    # healthy at w_max: the capacity moved, but a quota's burst may be hiding an overload, so
    # w_max moves up one permit at a time, each step held for 4 windows like a probe
    assert await up.window(0.0) == 21
    assert lim.w_max == 22
    for _ in range(3):
        assert await up.window(0.0) == 21
    assert await up.window(0.0) == 22  # probing the new w_max
    assert await up.window(0.0) == 23
    assert lim.w_max == 24


async def test_the_background_holds_while_windows_show_it_and_fades_when_they_stop() -> None:
    lim, up = await limiter(32, ceiling=32)
    for _ in range(6):
        await up.window(0.2, seconds=0.32 / lim.limit)
    learned = lim.background
    assert learned > 0.1
    for _ in range(100):  # random throttles go on at the learned rate or above: nothing is stale
        await up.window(max(learned, 0.2))
    assert lim.background == learned
    for _ in range(100):  # at half of it, it moves half way down, never below
        await up.window(learned / 2)
    assert learned / 2 <= lim.background < learned * 0.7
    for _ in range(100):  # the random throttles stopped
        await up.window(0.0)
    assert lim.background < learned / 3  # ~0.68 x 0.99**100


async def test_respects_floor_and_ceiling() -> None:
    lim, up = await limiter(2, floor=2, ceiling=3)
    for _ in range(5):
        await up.window(1.0)
    assert lim.limit == 2
    for _ in range(5):
        await up.window(0.0)
    assert lim.limit == 3
    with pytest.raises(ValueError):
        AdaptiveLimiter(initial=1, floor=0, ceiling=3)
    with pytest.raises(ValueError):
        AdaptiveLimiter(initial=1, floor=1, ceiling=3, tolerance=0.0)


async def test_waiters_are_served_fifo_and_never_exceed_the_limit() -> None:
    limiter = AdaptiveLimiter(initial=2, floor=1, ceiling=2)
    held = [await limiter.acquire(), await limiter.acquire()]
    order: list[int] = []

    async def worker(i: int) -> None:
        p = await limiter.acquire()
        order.append(i)
        assert limiter.in_flight <= 2
        await asyncio.sleep(0)
        limiter.release(p)

    tasks = [asyncio.create_task(worker(i)) for i in range(5)]
    await asyncio.sleep(0)
    assert order == []
    for p in held:
        limiter.release(p)
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert limiter.peak_in_flight == 2 and limiter.in_flight == 0


async def test_cancelled_waiter_does_not_leak_a_permit() -> None:
    limiter = AdaptiveLimiter(initial=1, floor=1, ceiling=1)
    held = await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    limiter.release(held)
    await asyncio.gather(waiter, return_exceptions=True)
    assert limiter.in_flight == 0
    p = await asyncio.wait_for(limiter.acquire(), 1)
    limiter.release(p)


async def test_a_permit_released_twice_counts_once() -> None:
    limiter = AdaptiveLimiter(initial=1, floor=1, ceiling=1)
    p = await limiter.acquire()
    limiter.release(p, succeeded=True)
    limiter.release(p, succeeded=True)
    assert limiter.in_flight == 0


async def test_a_first_waiter_is_served_before_earlier_ones() -> None:
    limiter = AdaptiveLimiter(initial=1, floor=1, ceiling=1)
    held = await limiter.acquire()
    order: list[str] = []

    async def worker(name: str, first: bool) -> None:
        p = await limiter.acquire(first=first)
        order.append(name)
        limiter.release(p)

    queued = asyncio.create_task(worker("queued", False))
    await asyncio.sleep(0)
    retry = asyncio.create_task(worker("retry", True))
    await asyncio.sleep(0)
    limiter.release(held)
    await asyncio.gather(queued, retry)
    assert order == ["retry", "queued"]


async def test_over_limit_while_permits_from_before_a_cut_are_out() -> None:
    limiter = AdaptiveLimiter(initial=4, floor=1, ceiling=4)
    held = [await limiter.acquire() for _ in range(4)]
    assert not limiter.over_limit
    for _ in range(4):  # one call throttled 4 times in a row: the limit is above the upstream's
        limiter.throttled(held[0])
    assert limiter.limit == 3 and limiter.over_limit
    limiter.release(held[0])
    assert not limiter.over_limit
    # a first waiter still waits for a free permit: it never takes one over the limit
    retry = asyncio.create_task(limiter.acquire(first=True))
    await asyncio.sleep(0)
    assert not retry.done()
    limiter.release(held[1])  # handed over at once: back at the limit, never over it
    assert limiter.in_flight == 3 and not limiter.over_limit
    limiter.release(await retry)
    for p in held[2:]:
        limiter.release(p)
    assert limiter.in_flight == 0


async def test_slow_starts_overshoot_is_cut_within_its_first_round() -> None:
    """Against a cap of 16, slow start's raise to 24 adds 8 permits that are throttled at once: the
    window closes after those 8 outcomes (the permits the raise added, throttled in their first
    round) and the limit goes back to 16, instead of waiting for 17 throttles."""
    lim, up = await limiter(16, ceiling=64)
    assert await up.window(0.0) == 24
    await up.fill(24)
    extra = list(up.held)[16:]
    for permit in extra:
        lim.throttled(permit)
        lim.release(permit, throttled=True)
    assert lim.limit == 16 and lim.decreases == 1 and lim.windows == 3


async def test_a_raise_under_random_throttles_is_not_taken_for_an_overshoot() -> None:
    lim, up = await limiter(32, ceiling=48)
    for _ in range(6):  # 20% random throttles, learned as the background and the cuts undone
        await up.window(0.2, seconds=0.32 / lim.limit)
    assert lim.restores == 1 and lim.background > 0.15
    decreases = lim.decreases
    for _ in range(30):  # slow start resumes after the undo: 32 -> 48, never cut for it
        await up.window(0.2, seconds=0.01)
    assert lim.limit == 48 and lim.decreases == decreases
