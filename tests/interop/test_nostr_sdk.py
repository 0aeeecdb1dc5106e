"""Interoperability with rust-nostr through its Python bindings (``nostr_sdk``).

Keys, event ids and signatures all come from the SDK; the relay only has to speak NIP-01 (and
NIP-09, NIP-45) well enough for a real client library to get the right answers. Each query is
made by a fresh client that never saw the events being published, so nothing can be answered
from the SDK's own state instead of the relay.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import pytest
from nostr_sdk import (
    Client,
    ClientBuilder,
    Coordinate,
    Event,
    EventBuilder,
    EventId,
    Filter,
    Keys,
    Kind,
    Metadata,
    MetadataRecord,
    RelayMessageEnum,
    RelayUrl,
    ReqTarget,
    Tag,
    Timestamp,
)

from relay.app import Relay
from tests.conftest import url_of

pytestmark = pytest.mark.interop

TIMEOUT = timedelta(seconds=10)
WAIT = TIMEOUT.total_seconds()

EXERCISE_TEMPLATE = 33401
WORKOUT_RECORD = 1301

Connect = Callable[[], Awaitable[Client]]


@pytest.fixture
def relay_url(relay: Relay) -> RelayUrl:
    return RelayUrl.parse(url_of(relay))


@pytest.fixture
async def connect(relay_url: RelayUrl) -> AsyncIterator[Connect]:
    """Open SDK clients connected to the test relay; all are shut down at the end."""
    opened: list[Client] = []

    async def open_client() -> Client:
        # Ask the SDK to check that every event it is sent matches the subscription's filters.
        client = ClientBuilder().verify_subscriptions(True).build()
        opened.append(client)
        await client.add_relay(relay_url)
        output = await client.try_connect(TIMEOUT)
        assert output.success == [relay_url], output.failed
        return client

    yield open_client
    for client in reversed(opened):
        await client.shutdown()


async def publish(client: Client, relay_url: RelayUrl, event: Event) -> None:
    """Send ``event`` and require the relay's OK true."""
    output = await client.send_event(event, ok_timeout=TIMEOUT)
    assert output.id == event.id()
    assert output.failed == {}, output.failed
    assert output.success == [relay_url]


async def fetch(client: Client, relay_url: RelayUrl, *filters: Filter) -> list[Event]:
    """REQ until EOSE through the SDK; every event's id and signature are checked."""
    events = await client.fetch_events(ReqTarget.single(relay_url, list(filters)), TIMEOUT)
    for event in events:
        assert event.verify(), event.as_json()
    return events


def ids(events: list[Event]) -> set[str]:
    return {event.id().to_hex() for event in events}


def note(keys: Keys, content: str, *, created_at: int | None = None) -> Event:
    builder = EventBuilder(Kind(1), content)
    if created_at is not None:
        builder = builder.custom_created_at(Timestamp.from_secs(created_at))
    return builder.finalize(keys)


def exercise_template(keys: Keys, identifier: str, title: str, created_at: int) -> Event:
    tags = [
        Tag.identifier(identifier),
        Tag.custom("title", [title]),
        Tag.custom("format", ["weight", "reps", "rpe", "set_type"]),
        Tag.custom("format_units", ["kg", "count", "0-10", "enum"]),
        Tag.custom("equipment", ["barbell"]),
    ]
    return (
        EventBuilder(Kind(EXERCISE_TEMPLATE), f"How to do a {title.lower()}.")
        .tags(tags)
        .custom_created_at(Timestamp.from_secs(created_at))
        .finalize(keys)
    )


def now() -> int:
    return Timestamp.now().as_secs()


async def test_text_note_by_id_and_author(connect: Connect, relay_url: RelayUrl) -> None:
    keys = Keys.generate()
    writer = await connect()
    first = note(keys, "first run of the week", created_at=now() - 5)
    second = note(keys, "second run of the week")
    await publish(writer, relay_url, first)
    await publish(writer, relay_url, second)

    reader = await connect()
    by_id = await fetch(reader, relay_url, Filter().id(first.id()))
    assert [e.as_json() for e in by_id] == [first.as_json()]

    by_author = await fetch(reader, relay_url, Filter().author(keys.public_key()).kind(Kind(1)))
    assert ids(by_author) == ids([first, second])
    assert len(by_author) == 2

    someone_else = await fetch(
        reader, relay_url, Filter().author(Keys.generate().public_key()).kind(Kind(1))
    )
    assert someone_else == []

    newest = await fetch(reader, relay_url, Filter().author(keys.public_key()).limit(1))
    assert ids(newest) == ids([second])


async def test_metadata_is_replaced_by_the_newer(connect: Connect, relay_url: RelayUrl) -> None:
    keys = Keys.generate()
    t = now()
    older = (
        Metadata.from_record(MetadataRecord(name="old name", about="before"))
        .into_event_builder()
        .custom_created_at(Timestamp.from_secs(t - 10))
        .finalize(keys)
    )
    newer = (
        Metadata.from_record(MetadataRecord(name="new name", about="after"))
        .into_event_builder()
        .custom_created_at(Timestamp.from_secs(t))
        .finalize(keys)
    )
    writer = await connect()
    await publish(writer, relay_url, older)
    await publish(writer, relay_url, newer)
    # The older version again, after the newer: it must not come back (any OK is fine).
    await writer.send_event(older, ok_timeout=TIMEOUT)

    reader = await connect()
    found = await fetch(reader, relay_url, Filter().author(keys.public_key()).kind(Kind(0)))
    assert [e.id().to_hex() for e in found] == [newer.id().to_hex()]
    assert Metadata.from_json(found[0].content()).as_record().name == "new name"
    assert await fetch(reader, relay_url, Filter().id(older.id())) == []


async def test_exercise_template_by_d_tag(connect: Connect, relay_url: RelayUrl) -> None:
    keys = Keys.generate()
    t = now()
    squat_v1 = exercise_template(keys, "back-squat", "Squat", t - 10)
    squat_v2 = exercise_template(keys, "back-squat", "Back squat", t)
    bench = exercise_template(keys, "bench-press", "Bench press", t)
    writer = await connect()
    for event in (squat_v1, squat_v2, bench):
        await publish(writer, relay_url, event)

    reader = await connect()
    author = keys.public_key()
    by_d = await fetch(
        reader,
        relay_url,
        Filter().kind(Kind(EXERCISE_TEMPLATE)).author(author).identifier("back-squat"),
    )
    assert [e.as_json() for e in by_d] == [squat_v2.as_json()]
    tags = [tag.to_vec() for tag in by_d[0].tags()]
    assert tags == [
        ["d", "back-squat"],
        ["title", "Back squat"],
        ["format", "weight", "reps", "rpe", "set_type"],
        ["format_units", "kg", "count", "0-10", "enum"],
        ["equipment", "barbell"],
    ]

    # A workout record referring to the template by its address: found by "#a".
    bench_address = Coordinate(Kind(EXERCISE_TEMPLATE), author, "bench-press")
    record = (
        EventBuilder(Kind(WORKOUT_RECORD), "Bench day")
        .tags([Tag.identifier("bench-day"), Tag.coordinate(bench_address)])
        .finalize(keys)
    )
    await publish(writer, relay_url, record)
    referencing = await fetch(reader, relay_url, Filter().coordinate(bench_address))
    assert ids(referencing) == ids([record])

    by_kind = await fetch(reader, relay_url, Filter().kind(Kind(EXERCISE_TEMPLATE)).author(author))
    assert ids(by_kind) == ids([squat_v2, bench])

    both_d = await fetch(
        reader,
        relay_url,
        Filter()
        .kind(Kind(EXERCISE_TEMPLATE))
        .identifiers(["bench-press", "back-squat", "deadlift"]),
    )
    assert ids(both_d) == ids([squat_v2, bench])


async def test_live_event_from_another_client(connect: Connect, relay_url: RelayUrl) -> None:
    keys = Keys.generate()
    old = note(keys, "stored before the subscription", created_at=now() - 5)
    publisher = await connect()
    await publish(publisher, relay_url, old)

    subscriber = await connect()
    notifications = subscriber.notifications()
    sub = await subscriber.subscribe(
        ReqTarget.single(relay_url, [Filter().author(keys.public_key()).kind(Kind(1))])
    )
    assert sub.success == [relay_url], sub.failed

    stored: list[str] = []
    async with asyncio.timeout(WAIT):
        while True:
            item = await notifications.next()
            assert item is not None, "notification stream ended"
            if item.is_new_event() and item.subscription_id == sub.id:
                assert item.event.verify()
                stored.append(item.event.id().to_hex())
            elif item.is_message():
                message = item.message.as_enum()
                if isinstance(message, RelayMessageEnum.CLOSED):
                    pytest.fail(f"subscription closed: {message.message}")
                if (
                    isinstance(message, RelayMessageEnum.END_OF_STORED_EVENTS)
                    and message.subscription_id == sub.id
                ):
                    break
    assert stored == [old.id().to_hex()]

    live = note(keys, "published after EOSE")
    await publish(publisher, relay_url, live)
    async with asyncio.timeout(WAIT):
        while True:
            item = await notifications.next()
            assert item is not None, "notification stream ended"
            if item.is_new_event() and item.subscription_id == sub.id:
                break
    assert item.event.as_json() == live.as_json()
    assert item.relay_url == relay_url


async def test_deletion_removes_the_event(connect: Connect, relay_url: RelayUrl) -> None:
    keys = Keys.generate()
    doomed = note(keys, "delete me", created_at=now() - 5)
    kept = note(keys, "keep me", created_at=now() - 5)
    deletion = (
        EventBuilder(Kind(5), "posted by mistake")
        .tags([Tag.event(doomed.id()), Tag.custom("k", ["1"])])
        .finalize(keys)
    )
    writer = await connect()
    await publish(writer, relay_url, doomed)
    await publish(writer, relay_url, kept)

    before = await connect()
    assert ids(await fetch(before, relay_url, Filter().id(doomed.id()))) == ids([doomed])

    await publish(writer, relay_url, deletion)
    # Sending the deleted event again must not bring it back (any OK is fine).
    await writer.send_event(doomed, ok_timeout=TIMEOUT)

    after = await connect()
    assert await fetch(after, relay_url, Filter().id(doomed.id())) == []
    author_notes = await fetch(after, relay_url, Filter().author(keys.public_key()).kind(Kind(1)))
    assert ids(author_notes) == ids([kept])
    deletions = await fetch(after, relay_url, Filter().author(keys.public_key()).kind(Kind(5)))
    assert [e.as_json() for e in deletions] == [deletion.as_json()]
    referencing = await fetch(after, relay_url, Filter().kind(Kind(5)).event(doomed.id()))
    assert ids(referencing) == ids([deletion])


async def test_same_second_versions_keep_the_lowest_id(
    connect: Connect, relay_url: RelayUrl
) -> None:
    """NIP-01: of two versions with the same created_at, the lowest id is kept."""
    keys = Keys.generate()
    t = now()
    versions = sorted(
        (exercise_template(keys, "deadlift", title, t) for title in ("Deadlift", "Conventional")),
        key=lambda e: e.id().to_hex(),
    )
    lowest, highest = versions
    writer = await connect()
    await publish(writer, relay_url, highest)
    # The lower id arrives second and must replace the first (any OK for the loser is fine).
    await writer.send_event(lowest, ok_timeout=TIMEOUT)
    await writer.send_event(highest, ok_timeout=TIMEOUT)

    reader = await connect()
    found = await fetch(
        reader, relay_url, Filter().kind(Kind(EXERCISE_TEMPLATE)).author(keys.public_key())
    )
    assert ids(found) == ids([lowest])


async def test_deletion_of_an_address(connect: Connect, relay_url: RelayUrl) -> None:
    """NIP-09: an ``a`` tag deletes every version of the address up to the deletion."""
    keys = Keys.generate()
    t = now()
    squat = exercise_template(keys, "squat", "Squat", t - 10)
    row = exercise_template(keys, "row", "Row", t - 10)
    address = Coordinate(Kind(EXERCISE_TEMPLATE), keys.public_key(), "squat")
    deletion = (
        EventBuilder(Kind(5), "")
        .tags([Tag.coordinate(address), Tag.custom("k", [str(EXERCISE_TEMPLATE)])])
        .custom_created_at(Timestamp.from_secs(t - 5))
        .finalize(keys)
    )
    writer = await connect()
    await publish(writer, relay_url, squat)
    await publish(writer, relay_url, row)
    await publish(writer, relay_url, deletion)

    reader = await connect()
    by_kind = Filter().kind(Kind(EXERCISE_TEMPLATE)).author(keys.public_key())
    assert ids(await fetch(reader, relay_url, by_kind)) == ids([row])

    # A version newer than the deletion is a new template: it is stored and found.
    again = exercise_template(keys, "squat", "Squat (again)", t)
    await publish(writer, relay_url, again)
    assert ids(await fetch(reader, relay_url, by_kind)) == ids([row, again])


async def test_deletion_by_someone_else_is_ignored(connect: Connect, relay_url: RelayUrl) -> None:
    keys = Keys.generate()
    target = note(keys, "not yours to delete")
    forged = EventBuilder(Kind(5), "").tags([Tag.event(target.id())]).finalize(Keys.generate())
    writer = await connect()
    await publish(writer, relay_url, target)
    await writer.send_event(forged, ok_timeout=TIMEOUT)

    reader = await connect()
    assert ids(await fetch(reader, relay_url, Filter().id(target.id()))) == ids([target])


async def test_count(connect: Connect, relay_url: RelayUrl) -> None:
    keys = Keys.generate()
    writer = await connect()
    notes = [note(keys, f"set {n}") for n in range(3)]
    for event in notes:
        await publish(writer, relay_url, event)
    reaction = EventBuilder(Kind(7), "+").tags([Tag.event(notes[0].id())]).finalize(keys)
    await publish(writer, relay_url, reaction)

    reader = await connect()
    relay = await reader.relay(relay_url)
    assert relay is not None
    author = keys.public_key()
    assert await relay.count_events(Filter().author(author).kind(Kind(1)), TIMEOUT) == 3
    assert await relay.count_events(Filter().author(author), TIMEOUT) == 4
    assert await relay.count_events(Filter().kind(Kind(7)).event(notes[0].id()), TIMEOUT) == 1
    nobody = Keys.generate().public_key()
    assert await relay.count_events(Filter().author(nobody), TIMEOUT) == 0
    assert (
        await relay.count_events(Filter().ids([notes[1].id(), EventId.parse("0" * 64)]), TIMEOUT)
        == 1
    )


async def test_search_nip50(connect: Connect, relay_url: RelayUrl) -> None:
    """NIP-50 through the SDK's ``Filter.search``. (The SDK cannot express a multi-letter tag
    filter: its Filter keeps single-letter tags only, and drops ``#exercise`` when it parses
    one, so those are checked with NDK.)"""
    keys = Keys.generate()
    writer = await connect()
    squat = exercise_template(keys, "back-squat", "Back Squat", now() - 10)
    press = exercise_template(keys, "bench-press", "Bench Press", now() - 5)
    await publish(writer, relay_url, squat)
    await publish(writer, relay_url, press)

    reader = await connect()
    mine = Filter().author(keys.public_key()).kind(Kind(EXERCISE_TEMPLATE))
    found = await fetch(reader, relay_url, mine.search("back squat"))
    assert [e.as_json() for e in found] == [squat.as_json()]
    # A typo: the SDK's own check of subscriptions (a substring of the content) would drop
    # what the relay finds by trigrams, so this client does not check.
    lenient = Client()
    try:
        await lenient.add_relay(relay_url)
        assert (await lenient.try_connect(TIMEOUT)).success == [relay_url]
        typo = await fetch(lenient, relay_url, mine.search("bentch pres"))
        assert ids(typo) == ids([press])
    finally:
        await lenient.shutdown()
