"""The token-bucket registry with a fake clock (bursts, refill, scopes, verbs, memory
bound) and the session refusing over the rate."""

from __future__ import annotations

from relay.nostr.limits import Limits
from relay.nostr.policy import ConnInfo, Policies
from relay.nostr.ratelimit import Rate, RateLimiter
from relay.nostr.replies import Closed, Notice, Ok
from relay.nostr.session import Session, Unsubscribe


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


ALICE = ConnInfo(1, "203.0.113.1")
BOB = ConnInfo(2, "203.0.113.2")


def allowed(limiter: RateLimiter, conn: ConnInfo, verb: str, n: int) -> int:
    return sum(limiter(conn, verb) is None for _ in range(n))


def test_a_burst_passes_then_the_rate_refuses_until_tokens_refill() -> None:
    clock = Clock()
    limiter = RateLimiter({("ip", "EVENT"): Rate(2.0, 5.0)}, clock)
    assert allowed(limiter, ALICE, "EVENT", 5) == 5
    refused = limiter(ALICE, "EVENT")
    assert refused is not None and refused.prefix == "rate-limited"
    assert "2/s" in refused.reason and "burst 5" in refused.reason
    clock.now += 0.49
    assert limiter(ALICE, "EVENT") is not None  # not a whole token yet
    clock.now += 0.01
    assert allowed(limiter, ALICE, "EVENT", 3) == 1
    clock.now += 100
    assert allowed(limiter, ALICE, "EVENT", 9) == 5  # refills up to the burst, no more
    assert limiter.refused == {("EVENT", "ip_rate"): 1 + 1 + 2 + 4}


def test_verbs_and_addresses_have_their_own_buckets() -> None:
    limiter = RateLimiter({("ip", "EVENT"): Rate(1.0, 1.0), ("ip", "REQ"): Rate(1.0, 2.0)}, Clock())
    assert allowed(limiter, ALICE, "EVENT", 3) == 1
    assert allowed(limiter, ALICE, "REQ", 3) == 2
    assert allowed(limiter, ALICE, "COUNT", 3) == 3  # not limited
    assert allowed(limiter, BOB, "EVENT", 3) == 1
    # every connection from one address shares its bucket
    assert limiter(ConnInfo(3, ALICE.ip), "EVENT") is not None


def test_an_authed_pubkey_is_limited_on_top_of_its_address() -> None:
    clock = Clock()
    limiter = RateLimiter(
        {("ip", "EVENT"): Rate(1.0, 3.0), ("pubkey", "EVENT"): Rate(1.0, 2.0)}, clock
    )
    key = "ab" * 32
    alice = ConnInfo(1, ALICE.ip, frozenset({key}))
    bob = ConnInfo(2, BOB.ip, frozenset({key}))
    assert allowed(limiter, alice, "EVENT", 1) == 1
    assert allowed(limiter, bob, "EVENT", 1) == 1  # same key from another address
    refused = limiter(bob, "EVENT")
    assert refused is not None and "pubkey" in refused.reason
    # A refusal takes no token from the address: Bob's address still has two, unauthed.
    assert allowed(limiter, BOB, "EVENT", 3) == 2
    # Authenticating never lifts the address's limit.
    fresh = ConnInfo(4, ALICE.ip, frozenset({"cd" * 32}))
    assert allowed(limiter, fresh, "EVENT", 5) == 2
    assert limiter.refused == {("EVENT", "pubkey_rate"): 1, ("EVENT", "ip_rate"): 4}


def test_a_connection_without_an_address_is_not_limited_by_address() -> None:
    limiter = RateLimiter({("ip", "EVENT"): Rate(1.0, 1.0)}, Clock())
    assert allowed(limiter, ConnInfo(), "EVENT", 5) == 5
    assert len(limiter) == 0


def test_memory_is_bounded_and_full_buckets_are_dropped() -> None:
    clock = Clock()
    limiter = RateLimiter({("ip", "REQ"): Rate(10.0, 10.0)}, clock, max_buckets=100)
    for n in range(1_000):
        limiter(ConnInfo(n, f"10.0.{n // 256}.{n % 256}"), "REQ")
    assert len(limiter) == 100  # the least recently used went first
    clock.now += 1.0  # every bucket has refilled: dropped as clients come and go
    for n in range(50):
        limiter(ConnInfo(n, f"192.0.2.{n}"), "REQ")
    assert len(limiter) < 100
    assert not RateLimiter({("ip", "REQ"): Rate(0.0, 1.0)}, clock)  # rate 0 is off


def test_a_burst_of_zero_means_one_second_of_tokens() -> None:
    assert Rate.of(2.5, 0) == Rate(2.5, 3.0)
    assert Rate.of(0.01, 0) == Rate(0.01, 1.0)
    assert Rate.of(5, 20) == Rate(5, 20.0)


def test_the_session_refuses_over_the_rate_before_reading_the_message() -> None:
    limiter = RateLimiter(
        {("ip", verb): Rate(0.001, 1.0) for verb in ("EVENT", "REQ", "COUNT")}, Clock()
    )
    policies = Policies() + Policies(throttle=(limiter,))
    assert policies.throttle == (limiter,)
    session = Session(Limits(), policies, conn_id=1, ip=ALICE.ip)
    claimed = "ab" * 32
    event = '["EVENT", {"id": "' + claimed + '", "kind": 1}]'
    first = session.receive(event, 0)
    assert isinstance(first[0], Ok) and first[0].prefix == "invalid"  # a token was taken
    second = session.receive(event, 0)
    assert isinstance(second[0], Ok) and second[0].prefix == "rate-limited"
    assert second[0].event_id == claimed
    assert isinstance(session.receive('["EVENT", {}]', 0)[0], Notice)  # no id to answer
    for verb in ("REQ", "COUNT"):
        assert not isinstance(session.receive(f'["{verb}", "s", {{}}]', 0)[0], Closed)
        again = session.receive(f'["{verb}", "s", {{}}]', 0)
        assert isinstance(again[0], Closed) and again[0].error.prefix == "rate-limited"
    assert session.receive('["CLOSE", "s"]', 0) == [Unsubscribe("s")]  # never limited
