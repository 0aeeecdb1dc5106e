"""A NOTIFY from a role other than the relay's is a wake-up, not a position.

Any role that may connect may NOTIFY (``fitrelay_reader`` even in its read-only
transactions). A payload is a log position the live tail uses to tell a new subscription's
stored answer from live news; trusting a forged one made every later subscription miss every
live event until a restart.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from relay.app import Relay
from tests.client import RawClient
from tests.conftest import READER, as_user, url_of
from tests.signer import Keys

AUTHOR = Keys(31)


async def test_a_forged_position_does_not_silence_live_delivery(relay: Relay, db_dsn: str) -> None:
    payloads: asyncio.Queue[str] = asyncio.Queue()
    relay.listener.subscribe(payloads.put_nowait)
    async with asyncio.timeout(10):
        await relay.listener.connected.wait()
    reader = await asyncpg.connect(as_user(db_dsn, READER))
    publisher = await RawClient.open(url_of(relay))
    subscriber = await RawClient.open(url_of(relay))
    try:
        async with reader.transaction(readonly=True):
            await reader.execute("NOTIFY fitrelay_events, '999999999999'")
        first = AUTHOR.sign(1, "first", [["t", "trust"]])
        assert (await publisher.publish(first))[2] is True
        seen: list[str] = []
        async with asyncio.timeout(10):
            while not any(p.isdigit() for p in seen):  # the commit's own notification
                seen.append(await payloads.get())
        assert "999999999999" not in seen
        assert relay.listener.untrusted == 1
        assert relay.tail.known_committed() < 999_999_999_999
        assert await subscriber.req("s", {"kinds": [1], "#t": ["trust"]}) == [first]
        second = AUTHOR.sign(1, "second", [["t", "trust"]])
        assert (await publisher.publish(second))[2] is True
        live: list[Any] = await subscriber.expect("EVENT")
        assert live[2]["id"] == second["id"]
    finally:
        await reader.close()
        await publisher.close()
        await subscriber.close()
