"""Reads on streaming replicas: which hot standby a query may run on, and when none may.

The relay writes to one primary and may read from hot standbys of it (``db.read_dsns``).
A standby replays the primary's WAL some time after the primary wrote it, so a query there
can miss what the relay already knows to be committed. The rule (docs/scaling.md):

- :attr:`Replicas.horizon` is the highest WAL position of anything this process has acted
  on: every commit of its writer (read after the commit) and every read of the log by its
  live tail (read before the events found are dispatched). A client query runs on a
  standby only when that standby has replayed the horizon; else on the primary. So a
  client reads its own writes, never misses an event it was sent live, and no stored answer
  lacks an event the live tail has already passed (which it would never send live).
- The replay position of each standby is polled every ``db.replica_poll_ms``. A query whose
  horizon the last poll already covers goes to the least busy such standby without an extra
  round trip; otherwise the least lagged standby is asked for its position first, on the
  connection the query then uses, and the query falls back to the primary if it is behind.
- A standby that fails (a poll or a query cannot reach it, or it is not in recovery) is taken
  out and tried again after a wait that doubles up to ``db.replica_retry_max_ms``; one more
  than ``db.replica_max_lag_ms`` behind is left out until it catches up. The query that met
  the failure runs again on the primary, as does one cancelled by a recovery conflict.

WAL positions are handled as integers (bytes from ``0/0``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg

from relay.storage.failures import DATABASE_ERRORS
from relay.storage.migrate import Conn
from relay.storage.postgres import PoolBusy, create_pool
from relay.storage.queries import load_queries

__all__ = ["FALLBACK_REASONS", "Replica", "Replicas", "lsn_text"]

log = logging.getLogger(__name__)

_Q = load_queries("replicas.sql")
T = TypeVar("T")

FALLBACK_REASONS = ("none", "behind", "down", "busy", "conflict")
"""Why a client query ran on the primary although replicas are configured: no replica was
usable, the one asked had not replayed the horizon, it failed during the query, its pool
was exhausted, or the query was cancelled by a recovery conflict."""

_UNREACHABLE: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)
"""What a standby that is away (stopped, restarting, unreachable, full) raises."""

_CONFLICTS: tuple[type[Exception], ...] = (
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
)
"""``canceling statement due to conflict with recovery`` (40001, or 40P01 for a lock
conflict): the standby's replay needed what the query held; the primary has no such limit."""


_POLL_ERRORS: tuple[type[Exception], ...] = (*DATABASE_ERRORS, TimeoutError)


def lsn_text(position: int) -> str:
    """``position`` as PostgreSQL writes a pg_lsn (``16/B374D848``)."""
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


class _NotStandby(Exception):
    """The server named as a replica is not in recovery (promoted, or a primary)."""


_TAKE_OUT: tuple[type[Exception], ...] = (*_UNREACHABLE, _NotStandby)
"""A replica that raises these during a read is taken out of reads."""


@dataclass
class Replica:
    """One hot standby, as last seen."""

    name: str
    """``replica<N>``, its place in ``db.read_dsns`` (the DSN itself may hold a password)."""
    dsn: str
    pool: asyncpg.Pool | None = None
    replay: int = -1
    """Last replay position known (-1: never read)."""
    lag_seconds: float = math.inf
    lag_bytes: int = 0
    up: bool = False
    """Answering, and a standby."""
    retry_at: float = 0.0
    backoff: float = 0.0
    problem: str = "not polled yet"
    reads: int = 0
    failures: int = 0


@dataclass
class _Samples:
    """Recent ``(time, primary WAL position)`` readings, to turn a replay position into how
    long ago the primary was there."""

    keep_seconds: float
    readings: deque[tuple[float, int]] = field(default_factory=deque)

    def add(self, now: float, position: int) -> None:
        self.readings.append((now, position))
        while self.readings and self.readings[0][0] < now - self.keep_seconds:
            self.readings.popleft()

    def lag(self, replay: int, now: float) -> float:
        """Seconds since the primary first had WAL the standby has not replayed: 0 when it
        has replayed the newest reading, at least this much otherwise."""
        for when, position in self.readings:
            if position > replay:
                return max(0.0, now - when)
        return 0.0


class Replicas:
    """A stage: polls the standbys and routes client reads (see the module docstring).

    Args:
        dsns: the standbys, in ``db.read_dsns`` order.
        primary_position: reads the primary's WAL insert position (on the write pool).
        pool_min, pool_max, statement_timeout_ms: each standby's pool, like the query pool.
        max_lag, poll, retry_max: seconds (``db.replica_*``).
    """

    name = "replicas"

    def __init__(
        self,
        dsns: Sequence[str],
        *,
        primary_position: Callable[[], Awaitable[int]],
        pool_min: int = 1,
        pool_max: int = 10,
        statement_timeout_ms: int = 10_000,
        max_lag: float = 5.0,
        poll: float = 0.2,
        retry_max: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.replicas = [Replica(f"replica{i}", dsn, backoff=poll) for i, dsn in enumerate(dsns)]
        self.primary_position = primary_position
        self.pool_min, self.pool_max = pool_min, pool_max
        self.statement_timeout_ms = statement_timeout_ms
        self.max_lag, self.poll, self.retry_max = max_lag, poll, retry_max
        self.clock = clock
        self.horizon = 0
        """Highest WAL position this process has acted on (see the module docstring)."""
        self.primary_reads = 0
        self.fallbacks: Counter[str] = Counter()
        self.polled = asyncio.Event()
        """Set after every poll round (tests wait on it, then clear it)."""
        self._samples = _Samples(keep_seconds=max(2 * max_lag, 10 * poll, 2.0))

    def note(self, position: int) -> None:
        """This process acted on everything up to ``position`` (a commit, a log read)."""
        if position > self.horizon:
            self.horizon = position

    def usable(self) -> list[Replica]:
        return [
            r
            for r in self.replicas
            if r.up and r.pool is not None and r.lag_seconds <= self.max_lag
        ]

    def pick(self, required: int) -> tuple[Replica, bool] | None:
        """The replica to try for a read that needs ``required`` replayed, and whether its
        last poll already shows it (else it is asked first); None when none is usable."""
        candidates = self.usable()
        if not candidates:
            return None
        covering = [r for r in candidates if r.replay >= required]
        if covering:
            return min(covering, key=_busy), True
        return max(candidates, key=lambda r: r.replay), False

    async def read(
        self,
        work: Callable[[Conn], Awaitable[T]],
        connection: Callable[[asyncpg.Pool | None], AbstractAsyncContextManager[Conn]],
    ) -> T:
        """Run ``work`` on a replica that has replayed the horizon, else on the primary
        (``connection(None)``); a replica that fails meanwhile is taken out and ``work`` runs
        again on the primary."""
        required = self.horizon
        choice = self.pick(required)
        if choice is None:
            reason = "none"
        else:
            replica, covered = choice
            assert replica.pool is not None
            try:
                async with connection(replica.pool) as conn:
                    if covered or await self._caught_up(replica, conn, required):
                        result = await work(conn)
                        replica.reads += 1
                        return result
                reason = "behind"
            except PoolBusy:
                reason = "busy"
            except _CONFLICTS:
                reason = "conflict"
            except _TAKE_OUT as exc:
                self._failed(replica, exc)
                reason = "down"
        self.fallbacks[reason] += 1
        async with connection(None) as conn:
            result = await work(conn)
        self.primary_reads += 1
        return result

    async def _caught_up(self, replica: Replica, conn: Conn, required: int) -> bool:
        standby, replay = _position(await conn.fetchrow(_Q["replay_position"]))
        if not standby or replay is None:
            raise _NotStandby("not in recovery")
        replica.replay = max(replica.replay, replay)
        return replay >= required

    def _failed(self, replica: Replica, exc: BaseException | str) -> None:
        now = self.clock()
        if replica.up:
            replica.backoff = self.poll
            log.warning("replicas: %s taken out of reads: %s", replica.name, exc)
        else:
            replica.backoff = min(self.retry_max, max(self.poll, replica.backoff * 2))
        replica.up = False
        replica.replay = -1  # a restarted standby may start replay from further back
        replica.problem = str(exc) or type(exc).__name__
        replica.failures += 1
        replica.retry_at = now + replica.backoff

    # -- the stage --------------------------------------------------------------------------

    async def start(self) -> None:
        """One poll round, so replicas that answer are used from the first query."""
        await self.poll_round()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.poll)
            try:
                await self.poll_round()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("replicas: a poll round failed")

    async def stop(self) -> None:
        """Close the replicas' pools (no query of the relay runs any more)."""
        pools = [r.pool for r in self.replicas if r.pool is not None]
        for replica in self.replicas:
            replica.pool, replica.up = None, False
        for pool in pools:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), timeout=5)

    async def poll_round(self) -> None:
        """Read the primary's position, then every replica due for a look."""
        now = self.clock()
        try:
            primary: int | None = await self.primary_position()
        except DATABASE_ERRORS as exc:
            log.warning("replicas: cannot read the primary's WAL position: %s", exc)
            primary = None
        if primary is not None:
            self._samples.add(now, primary)
        due = [r for r in self.replicas if r.up or now >= r.retry_at]
        await asyncio.gather(*(self._poll_one(r, primary) for r in due))
        self.polled.set()

    async def _poll_one(self, replica: Replica, primary: int | None) -> None:
        try:
            async with asyncio.timeout(max(2.0, 5 * self.poll)):
                if replica.pool is None:
                    replica.pool = await self._open(replica.dsn)
                standby, replay = _position(await replica.pool.fetchrow(_Q["replay_position"]))
        except _POLL_ERRORS as exc:
            self._failed(replica, exc if str(exc) else type(exc).__name__)
            return
        if not standby or replay is None:
            self._failed(replica, "not in recovery (promoted, or not a standby)")
            return
        now = self.clock()
        replica.replay = replay
        replica.lag_seconds = self._samples.lag(replica.replay, now)
        replica.lag_bytes = max(0, primary - replica.replay) if primary is not None else 0
        if not replica.up:
            log.info("replicas: %s is serving reads (replayed %s)", replica.name,
                     lsn_text(replica.replay))  # fmt: skip
        replica.up, replica.problem, replica.backoff = True, "", self.poll

    async def _open(self, dsn: str) -> asyncpg.Pool:
        return await create_pool(
            dsn,
            min_size=self.pool_min,
            max_size=self.pool_max,
            statement_timeout_ms=self.statement_timeout_ms,
        )


def _busy(replica: Replica) -> int:
    """Connections of the replica's pool in use now."""
    pool = replica.pool
    return 0 if pool is None else pool.get_size() - pool.get_idle_size()


def _position(row: Any) -> tuple[bool, int | None]:
    """``(in recovery, replay position)`` of a replay_position row."""
    if row is None:
        return False, None
    return bool(row[0]), None if row[1] is None else int(row[1])
