"""NIP-50 search and fitness tag filters over real WebSocket connections.

Stored answers by relevance, live events matched as the Python matcher decides, NIP-11's
``supported_nips``, a relay whose database cannot search (CLOSED ``unsupported:`` and a log
line), a relay configured without search, and stored events indexed at start for tag names
and search kinds added to the configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import asyncpg
import msgspec
import pytest

from relay.app import Relay
from relay.nostr.event import decode_event
from relay.storage.indexing import Indexing
from relay.storage.postgres import Store, create_pool
from tests.client import ClosedError, RawClient
from tests.conftest import relay_config, url_of
from tests.server.test_nip11 import http_get
from tests.signer import Keys, dumps

Start = Callable[..., Any]
KEYS = Keys(11)


def exercise(d: str, title: str, *, at: int = 1_700_000_000, **tags: str) -> dict[str, Any]:
    extra = [[name, value] for name, value in tags.items()]
    return KEYS.sign(33401, "", [["d", d], ["title", title], *extra], created_at=at)


def titles(events: list[dict[str, Any]]) -> list[str]:
    return [next(t[1] for t in e["tags"] if t[0] == "title") for e in events]


async def nips(relay: Relay) -> list[int]:
    _, _, body = await http_get(relay.port, {"Accept": "application/nostr+json"})
    found: list[int] = msgspec.json.decode(body)["supported_nips"]
    return found


async def test_search_stored_and_live(relay: Relay, client: RawClient) -> None:
    assert 50 in await nips(relay)
    for event in (
        exercise("bp", "Barbell Bench Press", equipment="barbell"),
        exercise("ibp", "Incline Dumbbell Bench Press", at=1_700_000_001),
        exercise("ohp", "Overhead Press"),
    ):
        assert (await client.publish(event))[2] is True
    found = await client.req("s", {"search": "bench pres", "kinds": [33401]})
    assert titles(found) == ["Barbell Bench Press", "Incline Dumbbell Bench Press"]
    assert titles(await client.req("t", {"search": "bentch"})) == titles(found)
    # Live: a new exercise that matches is sent, one that does not is not.
    await client.req("live", {"search": "floor pres"})
    listener = await RawClient.open(url_of(relay))
    try:
        await listener.publish(exercise("row", "Barbell Row"))
        match = exercise("fp", "Floor Press")
        await listener.publish(match)
    finally:
        await listener.close()
    assert await client.expect("EVENT") == ["EVENT", "live", match]


async def test_fitness_tag_filters_over_the_wire(client: RawClient) -> None:
    coord = f"33401:{KEYS.pubkey}:bp"
    template = f"33402:{KEYS.pubkey}:push"
    record = KEYS.sign(1301, "", [["d", "w1"], ["template", template, ""],
                                  ["exercise", coord, "", "80", "5", "8", "normal"]])  # fmt: skip
    assert (await client.publish(record))[2] is True
    assert [e["id"] for e in await client.req("e", {"#exercise": [coord]})] == [record["id"]]
    assert [e["id"] for e in await client.req("t", {"#template": [template]})] == [record["id"]]
    await client.send(["COUNT", "c", {"#template": [template], "kinds": [1301]}])
    assert (await client.expect("COUNT"))[2] == {"count": 1}
    with pytest.raises(ClosedError, match=r"^unsupported: tag filter '#colour'"):
        await client.req("x", {"#colour": ["red"]})


async def test_search_off_by_configuration(start_relay: Start) -> None:
    relay = await start_relay(relay_config(search={"enabled": False}))
    assert 50 not in await nips(relay)
    client = await RawClient.open(url_of(relay))
    try:
        with pytest.raises(ClosedError, match=r"^unsupported: search"):
            await client.req("s", {"search": "squat"})
    finally:
        await client.close()


async def test_no_pg_trgm_means_closed_and_a_log_line(
    start_relay: Start, db: asyncpg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    # What migration 0011 leaves behind on a server without pg_trgm.
    await db.execute("DROP INDEX search_words_trgm_idx; DROP EXTENSION pg_trgm")
    with caplog.at_level(logging.WARNING, logger="relay.app"):
        relay = await start_relay()
    assert any("NIP-50 search is off" in r.getMessage() for r in caplog.records)
    assert 50 not in await nips(relay)
    client = await RawClient.open(url_of(relay))
    try:
        with pytest.raises(ClosedError, match=r"^unsupported: search .*lacks the pg_trgm"):
            await client.req("s", {"search": "squat"})
        # Documents are still written, for when pg_trgm comes.
        assert (await client.publish(exercise("sq", "Back Squat")))[2] is True
    finally:
        await client.close()
    assert await db.fetchval("SELECT count(*) FROM search_documents") == 1


async def test_stored_events_indexed_at_start(
    db_dsn: str, start_relay: Start, db: asyncpg.Connection[Any]
) -> None:
    coord = f"33401:{KEYS.pubkey}:bp"
    old = [
        exercise("bp", "Barbell Bench Press"),
        KEYS.sign(1, "leg day", [["exercise", coord], ["colour", "red"]]),
        KEYS.sign(1, "squat heavy", []),
        KEYS.sign(1301, "", [["exercise", coord, "", "60", "8"]]),
    ]
    pool = await create_pool(db_dsn)
    try:  # Stored as before this version: no multi-letter tags, no documents.
        bare = Store(pool, default_limit=10, indexing=Indexing(frozenset(), frozenset()))
        texts = [dumps(e) for e in old]
        # The last one's JSON writes the tag name with an escape: still found.
        texts[-1] = texts[-1].replace('"exercise"', '"\\u0065xercise"')
        assert "\\u0065xercise" in texts[-1]
        await bare.ingest([decode_event(t.encode()) for t in texts], texts)
    finally:
        await pool.close()
    assert await db.fetchval("SELECT count(*) FROM search_documents") == 0
    config = relay_config(
        search={"kinds": [1, 33401, 33402]}, tags={"indexed": ["exercise", "colour"]}
    )
    relay = await start_relay(config)
    client = await RawClient.open(url_of(relay))
    try:
        assert titles(await client.req("a", {"search": "bench"})) == ["Barbell Bench Press"]
        assert [e["id"] for e in await client.req("b", {"search": "squat"})] == [old[2]["id"]]
        found = {e["id"] for e in await client.req("c", {"#exercise": [coord]})}
        assert found == {old[1]["id"], old[3]["id"]}
        assert [e["id"] for e in await client.req("d", {"#colour": ["red"]})] == [old[1]["id"]]
        with pytest.raises(ClosedError, match=r"^unsupported: tag filter '#template'"):
            await client.req("e", {"#template": ["x"]})
    finally:
        await client.close()
    assert sorted(r[0] for r in await db.fetch("SELECT name FROM indexed_tag_names")) == [
        "colour", "exercise",
    ]  # fmt: skip
    await relay.stop()
    # Dropping a name from the configuration drops its rows; kind 1 no longer searched.
    await start_relay(relay_config())
    assert await db.fetchval("SELECT count(*) FROM event_tags WHERE name = 'colour'") == 0
    assert await db.fetchval("SELECT count(*) FROM search_documents WHERE kind = 1") == 0
