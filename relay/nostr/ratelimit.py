"""Token buckets per client address and per authenticated pubkey, for EVENT, REQ and COUNT.

One :class:`RateLimiter` serves every connection of a process, so a client's budget is the
same however many sockets it opens. It reads time only through the clock it is given (a
monotonic one in the relay, a fake one in tests), and holds at most ``max_buckets`` buckets:
a bucket that has refilled completely is the same as no bucket, so it is dropped, and when
the limit is reached the least recently used bucket goes (its client starts full again).

The address's bucket always applies; when the connection has authenticated (NIP-42), each
of its pubkeys' buckets applies as well, so a key cannot multiply its budget by connecting
from many addresses, and since fresh keys cost nothing, authenticating never lifts the
address's limit. A message takes a token from every bucket that applies, or from none when
one of them is empty.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from relay.nostr.errors import NostrError
from relay.nostr.policy import ConnInfo

__all__ = ["VERBS", "Rate", "RateLimiter"]

VERBS = ("EVENT", "REQ", "COUNT")
"""The messages that are rate-limited."""

SCOPES = ("ip", "pubkey")


@dataclass(frozen=True, slots=True)
class Rate:
    """``per_second`` tokens refill continuously up to ``burst``."""

    per_second: float
    burst: float

    @classmethod
    def of(cls, per_second: float, burst: int) -> Rate:
        """A rate with ``burst`` tokens; 0 means one second's worth, at least one."""
        return cls(per_second, float(burst or max(1, math.ceil(per_second))))


class _Bucket:
    __slots__ = ("rate", "tokens", "updated")

    def __init__(self, rate: Rate, now: float) -> None:
        self.rate = rate
        self.tokens = rate.burst
        self.updated = now

    def refill(self, now: float) -> float:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.rate.burst, self.tokens + elapsed * self.rate.per_second)
        self.updated = now
        return self.tokens

    def full_at(self) -> float:
        return self.updated + (self.rate.burst - self.tokens) / self.rate.per_second


class RateLimiter:
    """The policy rule that refuses EVENT, REQ and COUNT over their rates (``throttle``).

    Args:
        rates: ``{(scope, verb): Rate}`` for scope ``ip`` or ``pubkey``; a missing pair is
            not limited.
        clock: monotonic seconds.
        max_buckets: the most buckets kept at once.
    """

    def __init__(
        self,
        rates: Mapping[tuple[str, str], Rate],
        clock: Callable[[], float],
        max_buckets: int = 100_000,
    ) -> None:
        self.rates = {key: rate for key, rate in rates.items() if rate.per_second > 0}
        self.clock = clock
        self.max_buckets = max(1, max_buckets)
        self.buckets: collections.OrderedDict[tuple[str, str, str], _Bucket] = (
            collections.OrderedDict()
        )
        self.refused: collections.Counter[tuple[str, str]] = collections.Counter()
        """Refusals by (verb, ``ip_rate`` or ``pubkey_rate``), read by the metrics."""

    def __bool__(self) -> bool:
        return bool(self.rates)

    def __len__(self) -> int:
        return len(self.buckets)

    def __call__(self, conn: ConnInfo, verb: str) -> NostrError | None:
        keys: list[tuple[str, str, str]] = []
        if conn.ip and ("ip", verb) in self.rates:
            keys.append(("ip", verb, conn.ip))
        if ("pubkey", verb) in self.rates:
            keys.extend(("pubkey", verb, pubkey) for pubkey in sorted(conn.authed))
        if not keys:
            return None
        now = self.clock()
        self._evict(now)
        buckets = [self._bucket(key, now) for key in keys]
        for key, bucket in zip(keys, buckets, strict=True):
            if bucket.refill(now) < 1.0:
                scope = key[0]
                self.refused[verb, f"{scope}_rate"] += 1
                rate = bucket.rate
                whose = "this address" if scope == "ip" else "this pubkey"
                return NostrError(
                    "rate-limited",
                    f"slow down: {verb} from {whose} is limited to "
                    f"{rate.per_second:g}/s (burst {rate.burst:g})",
                )
        for bucket in buckets:
            bucket.tokens -= 1.0
        return None

    def _bucket(self, key: tuple[str, str, str], now: float) -> _Bucket:
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= self.max_buckets:
                self.buckets.popitem(last=False)
            bucket = self.buckets[key] = _Bucket(self.rates[key[0], key[1]], now)
        else:
            self.buckets.move_to_end(key)
        return bucket

    def _evict(self, now: float) -> None:
        """Drop the least recently used buckets while they have refilled completely (a
        few per call, so the work stays constant)."""
        for _ in range(4):
            if not self.buckets:
                return
            key, bucket = next(iter(self.buckets.items()))
            if bucket.full_at() > now:
                return
            del self.buckets[key]
