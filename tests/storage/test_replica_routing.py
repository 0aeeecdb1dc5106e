"""The replica router's decisions on their own (no database): which replica a read may try,
how lag is measured from the primary's positions, and the backoff of a failed replica.
The same rules against a real standby are in tests/server/test_replicas.py."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.storage.replicas import Replica, Replicas, _Samples, lsn_text


class Pool:
    """Stands in for a replica's pool where only its use counts are read."""

    def __init__(self, in_use: int = 0) -> None:
        self.in_use = in_use

    def get_size(self) -> int:
        return 10

    def get_idle_size(self) -> int:
        return 10 - self.in_use


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def _never() -> int:
    raise AssertionError("not polled here")


def router(count: int = 2, clock: Clock | None = None) -> Replicas:
    replicas = Replicas(
        [f"postgresql:///r{i}" for i in range(count)],
        primary_position=_never,
        max_lag=1.0,
        poll=0.1,
        retry_max=1.0,
        clock=clock or Clock(),
    )
    for r in replicas.replicas:
        r.pool = Pool()  # type: ignore[assignment]
    return replicas


def serving(r: Replica, replay: int, lag: float = 0.0) -> None:
    r.up, r.replay, r.lag_seconds = True, replay, lag


def test_lsn_text_is_pg_lsn_notation() -> None:
    assert lsn_text(0) == "0/0"
    assert lsn_text((0x16 << 32) | 0xB374D848) == "16/B374D848"


def test_a_read_goes_to_a_replica_known_to_cover_it_without_asking() -> None:
    replicas = router()
    a, b = replicas.replicas
    serving(a, 500)
    serving(b, 900)
    assert replicas.pick(800) == (b, True)
    # Both cover it: the less busy one takes it, and it needs no question.
    a.pool.in_use = 3  # type: ignore[union-attr]
    assert replicas.pick(400) == (b, True)
    b.pool.in_use = 5  # type: ignore[union-attr]
    assert replicas.pick(400) == (a, True)


def test_when_no_poll_covers_the_read_the_least_lagged_replica_is_asked() -> None:
    replicas = router()
    a, b = replicas.replicas
    serving(a, 500)
    serving(b, 700)
    assert replicas.pick(1_000) == (b, False)


def test_down_or_lagging_replicas_are_left_out() -> None:
    replicas = router()
    a, b = replicas.replicas
    serving(a, 10_000, lag=1.5)  # past max_lag
    b.up = False
    assert replicas.pick(0) is None
    assert replicas.usable() == []
    serving(b, 0)
    assert replicas.pick(0) == (b, True)


def test_a_failed_replica_waits_longer_each_time_up_to_the_cap() -> None:
    clock = Clock()
    replicas = router(1, clock)
    replica = replicas.replicas[0]
    serving(replica, 1)
    waits = []
    for _ in range(6):
        replicas._failed(replica, "connection refused")
        waits.append(round(replica.retry_at - clock.now, 3))
        assert not replica.up and replica.problem == "connection refused"
        assert replica.replay == -1  # polled again before any read trusts a position
    assert waits == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_the_horizon_only_grows() -> None:
    replicas = router()
    replicas.note(50)
    replicas.note(20)
    assert replicas.horizon == 50


def test_lag_is_the_age_of_the_oldest_primary_position_not_replayed() -> None:
    samples = _Samples(keep_seconds=10)
    samples.add(1.0, 100)
    samples.add(2.0, 200)
    samples.add(3.0, 300)
    assert samples.lag(300, now=3.5) == 0.0  # replayed the newest reading
    assert samples.lag(250, now=3.5) == pytest.approx(0.5)  # lacks what 3.0 had
    assert samples.lag(150, now=3.5) == pytest.approx(1.5)
    assert samples.lag(50, now=3.5) == pytest.approx(2.5)
    samples.add(20.0, 300)  # older readings age out
    assert [when for when, _ in samples.readings] == [20.0]


@given(
    st.lists(st.integers(0, 10**6), min_size=1, max_size=30),
    st.integers(0, 10**6),
)
def test_lag_grows_the_less_a_replica_has_replayed(positions: list[int], replay: int) -> None:
    samples = _Samples(keep_seconds=math.inf)
    positions.sort()
    for i, position in enumerate(positions):
        samples.add(float(i), position)
    now = float(len(positions))
    lag = samples.lag(replay, now)
    assert 0.0 <= lag <= now
    assert (lag == 0.0) == (replay >= positions[-1])
    assert samples.lag(max(0, replay - 1), now) >= lag
