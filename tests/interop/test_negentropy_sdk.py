"""NIP-77 negentropy sync with rust-nostr's client (``nostr_sdk``, ``Client.sync``).

The SDK reconciles its own database against the relay's set for a filter, then downloads
what it lacks (REQ by id) and uploads what the relay lacks (EVENT): the summary it returns
and the two stores afterwards must both show exactly the symmetric difference.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from datetime import timedelta

import pytest
from nostr_sdk import (
    Client,
    ClientBuilder,
    Event,
    EventBuilder,
    Filter,
    Keys,
    Kind,
    NegentropyItem,
    RelayUrl,
    SyncDirection,
    SyncOptions,
    Timestamp,
)

from relay.app import Relay
from relay.nostr.event import decode_event
from relay.storage.postgres import Store
from tests.conftest import url_of

pytestmark = pytest.mark.interop

TIMEOUT = timedelta(seconds=10)
KIND = 1301


@pytest.fixture
def relay_url(relay: Relay) -> RelayUrl:
    return RelayUrl.parse(url_of(relay))


@pytest.fixture
async def sdk(relay_url: RelayUrl) -> AsyncIterator[Client]:
    client = ClientBuilder().build()
    await client.add_relay(relay_url)
    output = await client.try_connect(TIMEOUT)
    assert output.success == [relay_url], output.failed
    yield client
    await client.shutdown()


def records(keys: Keys, count: int, start: int, label: str) -> list[Event]:
    """``count`` workout records, three to a second so that timestamps tie."""
    return [
        EventBuilder(Kind(KIND), f"{label} {i}")
        .custom_created_at(Timestamp.from_secs(start + i // 3))
        .finalize(keys)
        for i in range(count)
    ]


async def on_relay(store: Store, events: Iterable[Event]) -> None:
    raws = [event.as_json() for event in events]
    await store.ingest([decode_event(raw.encode()) for raw in raws], raws)


def hexes(events: Iterable[Event]) -> set[str]:
    return {event.id().to_hex() for event in events}


async def reconcile(
    client: Client, relay_url: RelayUrl, local: Iterable[Event], kind: int = KIND
) -> tuple[set[str], set[str]]:
    """Reconcile ``local`` with the relay's set for the kind through the SDK's negentropy
    (a dry run: nothing is sent or fetched); the ids only the client has, and only the relay
    has."""
    relay = await client.relay(relay_url)
    assert relay is not None
    items = [NegentropyItem(id=e.id(), timestamp=e.created_at()) for e in local]
    options = SyncOptions().dry_run().initial_timeout(TIMEOUT)
    summary = await relay.sync(Filter().kind(Kind(kind)), items, options)
    return {i.to_hex() for i in summary.local}, {i.to_hex() for i in summary.remote}


async def sync(client: Client, direction: SyncDirection) -> tuple[set[str], set[str]]:
    """Run the SDK's whole sync from its (id-tracking) database: the ids it received, sent."""
    options = SyncOptions().direction(direction).initial_timeout(TIMEOUT)
    output = await client.sync(Filter().kind(Kind(KIND)), opts=options)
    assert output.failed == {}, output.failed
    report = output.report
    return {i.to_hex() for i in report.received}, {i.to_hex() for i in report.sent}


async def test_relay_has_more(sdk: Client, store: Store, relay_url: RelayUrl) -> None:
    keys = Keys.generate()
    shared = records(keys, 120, 1_700_000_000, "shared")
    extra = records(keys, 40, 1_700_000_100, "relay only")
    await on_relay(store, shared + extra)
    assert await reconcile(sdk, relay_url, shared) == (set(), hexes(extra))


async def test_client_has_more(sdk: Client, store: Store, relay_url: RelayUrl) -> None:
    keys = Keys.generate()
    shared = records(keys, 70, 1_700_000_000, "shared")
    extra = records(keys, 25, 1_699_000_000, "client only")
    await on_relay(store, shared)
    assert await reconcile(sdk, relay_url, shared + extra) == (hexes(extra), set())


async def test_both_differ(sdk: Client, store: Store, relay_url: RelayUrl) -> None:
    keys = Keys.generate()
    shared = records(keys, 300, 1_700_000_000, "shared")
    mine = records(keys, 33, 1_700_000_050, "client only")
    theirs = records(keys, 17, 1_700_000_050, "relay only")
    await on_relay(store, shared + theirs)
    assert await reconcile(sdk, relay_url, shared + mine) == (hexes(mine), hexes(theirs))


async def test_empty_sides(sdk: Client, store: Store, relay_url: RelayUrl) -> None:
    assert await reconcile(sdk, relay_url, []) == (set(), set())
    mine = records(Keys.generate(), 5, 1_700_000_000, "client only")
    assert await reconcile(sdk, relay_url, mine) == (hexes(mine), set())
    await on_relay(store, mine)
    assert await reconcile(sdk, relay_url, []) == (set(), hexes(mine))


async def test_sync_downloads_what_the_relay_has(
    sdk: Client, store: Store, relay_url: RelayUrl
) -> None:
    """The SDK's own sync (NEG-OPEN, then REQ by id) fetches the relay's events."""
    events = records(Keys.generate(), 50, 1_700_000_000, "relay only")
    await on_relay(store, events)
    assert await sync(sdk, SyncDirection.DOWN) == (hexes(events), set())


async def test_twenty_thousand_events(sdk: Client, store: Store, relay_url: RelayUrl) -> None:
    keys = Keys.generate()
    events = records(keys, 20_000, 1_690_000_000, "bulk")
    await on_relay(store, events)
    missing = events[5_000:5_030] + events[-20:]
    mine = records(keys, 10, 1_690_001_000, "client only")
    local = events[:5_000] + events[5_030:-20] + mine
    started = time.monotonic()
    found = await reconcile(sdk, relay_url, local)
    elapsed = time.monotonic() - started
    assert found == (hexes(mine), hexes(missing))
    assert elapsed < 5, elapsed
