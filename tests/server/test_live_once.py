"""A stored event is sent once: in the stored answer or as live news, never both.

The live tail may dispatch an event after a REQ already answered with it (the tail reads
the log after the writer's commit, and the commit's NOTIFY arrives when it arrives). The
relay remembers what its own writer committed until the tail has read it back, so the
subscription skips it, whether or not the query cache is on.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from relay.server.live import LogTail
from tests.client import RawClient
from tests.conftest import relay_config, url_of
from tests.signer import Keys

AUTHOR = Keys(21)


@pytest.mark.parametrize("cache", [False, True])
async def test_an_answered_event_is_not_sent_again_as_live(
    start_relay: Any, monkeypatch: pytest.MonkeyPatch, cache: bool
) -> None:
    notices = asyncio.Event()
    held: list[str] = []
    original_notified = LogTail.notified

    def late_notify(tail: LogTail, payload: str) -> None:
        # The commit's NOTIFY is late: the payload is held until the test lets it through.
        if notices.is_set():
            original_notified(tail, payload)
        else:
            held.append(payload)

    monkeypatch.setattr(LogTail, "notified", late_notify)
    relay = await start_relay(relay_config(cache={"enabled": cache}))
    tail: LogTail = relay.tail
    reading = asyncio.Event()
    original_catch_up = tail.catch_up

    async def late_catch_up() -> None:
        await reading.wait()  # the tail has not read the log yet
        await original_catch_up()

    monkeypatch.setattr(tail, "catch_up", late_catch_up)
    publisher = await RawClient.open(url_of(relay))
    subscriber = await RawClient.open(url_of(relay))
    try:
        first = AUTHOR.sign(1, "first", [["t", "once"]])
        assert (await publisher.publish(first))[2] is True
        answer = await subscriber.req("s", {"kinds": [1], "#t": ["once"]})
        assert [e["id"] for e in answer] == [first["id"]]
        notices.set()
        for payload in held:
            original_notified(tail, payload)
        reading.set()
        tail.wake()
        marker = AUTHOR.sign(1, "marker", [["t", "once"]])
        assert (await publisher.publish(marker))[2] is True
        live = []
        while not live or live[-1] != marker["id"]:
            frame = await subscriber.expect("EVENT")
            live.append(frame[2]["id"])
        assert live == [marker["id"]], "the answered event came again as live news"
    finally:
        await publisher.close()
        await subscriber.close()
