"""/metrics, /healthz and /readyz under a real workload: every counter moves by exactly
what the workload did."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from relay.app import Relay
from tests.client import RawClient
from tests.conftest import relay_config, url_of
from tests.signer import Keys

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def http_get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    async with asyncio.timeout(10):
        response = await reader.read()
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


async def scrape(relay: Relay) -> Samples:
    assert relay.monitor is not None
    status, text = await http_get(relay.monitor.port, "/metrics")
    assert status == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def wait_until(relay: Relay, check: Callable[[Samples], bool]) -> Samples:
    """Scrape until ``check`` holds (the relay counts some things after replying)."""
    async with asyncio.timeout(10):
        while True:
            samples = await scrape(relay)
            if check(samples):
                return samples
            await asyncio.sleep(0.02)


async def test_counters_move_by_exactly_the_workload(start_relay: Any) -> None:
    relay: Relay = await start_relay(relay_config(metrics=True))
    before = await scrape(relay)
    url = url_of(relay)
    alice = Keys(1)
    note = alice.sign(1, "hi")
    newer = alice.sign(33401, "", [["d", "squat"]], created_at=200)
    older = alice.sign(33401, "", [["d", "squat"]], created_at=100)
    tampered = dict(alice.sign(1, "x"), content="changed after signing")

    listener = await RawClient.open(url)
    client = await RawClient.open(url)
    try:
        assert await listener.req("live", {"kinds": [1]}) == []
        assert (await client.publish(note))[2] is True
        assert (await listener.expect("EVENT"))[2]["id"] == note["id"]
        assert (await client.publish(note))[2] is True  # duplicate
        assert (await client.publish(newer))[2] is True
        assert (await client.publish(older))[3].startswith("duplicate:")
        assert (await client.publish(tampered))[3].startswith("invalid:")
        assert [e["id"] for e in await client.req("q", {"kinds": [33401]})] == [newer["id"]]
        await client.send(["COUNT", "c", {"kinds": [1]}])
        assert (await client.expect("COUNT"))[2] == {"count": 1}
        await client.send_text("not json")
        assert (await client.expect("NOTICE"))[1].startswith("invalid:")
        await client.send(["REQ", "s", {"#colour": ["red"]}])
        assert (await client.expect("CLOSED"))[2].startswith("unsupported:")
    finally:
        await client.close()
    after = await wait_until(
        relay, lambda s: value(s, "fitrelay_connections_closed_total", reason="client") >= 1
    )
    try:

        def delta(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        received = {v: delta("fitrelay_messages_received_total", verb=v)
                    for v in ("EVENT", "REQ", "COUNT", "CLOSE", "invalid")}  # fmt: skip
        assert received == {"EVENT": 5, "REQ": 3, "COUNT": 1, "CLOSE": 0, "invalid": 1}
        sent = {v: delta("fitrelay_messages_sent_total", verb=v)
                for v in ("EVENT", "OK", "EOSE", "CLOSED", "NOTICE", "COUNT")}  # fmt: skip
        assert sent == {"EVENT": 2, "OK": 5, "EOSE": 2, "CLOSED": 1, "NOTICE": 1, "COUNT": 1}
        assert delta("fitrelay_notices_total", reason="invalid") == 1
        assert delta("fitrelay_subscriptions_closed_total", reason="unsupported") == 1
        assert delta("fitrelay_events_accepted_total", kind="regular") == 1
        assert delta("fitrelay_events_accepted_total", kind="exercise") == 1
        assert delta("fitrelay_events_duplicate_total", kind="regular") == 1
        assert delta("fitrelay_events_rejected_total", reason="duplicate", kind="exercise") == 1
        assert delta("fitrelay_events_rejected_total", reason="invalid", kind="regular") == 1
        # Four EVENTs reached the writer one after another: four batches of one.
        assert delta("fitrelay_writer_batch_events_count") == 4
        assert delta("fitrelay_writer_batch_events_sum") == 4
        assert delta("fitrelay_writer_commit_seconds_count") == 4
        assert delta("fitrelay_req_eose_seconds_count") == 2
        assert delta("fitrelay_req_events_total") == 1
        assert delta("fitrelay_count_seconds_count") == 1
        assert delta("fitrelay_live_events_total") == 1
        assert delta("fitrelay_live_delivery_seconds_count") == 1
        assert delta("fitrelay_connections_opened_total") == 2
        assert delta("fitrelay_connections_closed_total", reason="client") == 1
        assert value(after, "fitrelay_connections") == 1
        assert value(after, "fitrelay_subscriptions") == 1  # the listener's
        assert value(after, "fitrelay_writer_queue_events") == 0
        assert value(after, "fitrelay_db_pool_max") == relay.config.db.pool_max
        assert value(after, "fitrelay_build_info", version=_version()) == 1
        assert value(after, "process_resident_memory_bytes") > 0
    finally:
        await listener.close()


def _version() -> str:
    from importlib.metadata import version

    return version("fitrelay")


async def test_slow_client_and_timeouts_are_counted(start_relay: Any) -> None:
    """A stored answer larger than max_pending_outbound_bytes reaches a reading client
    whole (it is queued a chunk at a time); live events a client does not read get it
    disconnected."""
    relay: Relay = await start_relay(relay_config(metrics=True, max_pending_outbound_bytes=2000))
    alice = Keys(2)
    client = await RawClient.open(url_of(relay))
    publisher = await RawClient.open(url_of(relay))
    try:
        for i in range(10):
            assert (await client.publish(alice.sign(1, "x" * 300, created_at=1000 + i)))[2]
        got = await client.req("all", {"kinds": [1]})  # ~4 kB of answers
        assert len(got) == 10
        client.ws.transport.pause_reading()
        n = 0
        async with asyncio.timeout(30):
            while not relay.metrics.registry.get_sample_value(
                "fitrelay_slow_client_disconnects_total"
            ):
                n += 1
                assert (await publisher.publish(alice.sign(1, f"{n}" + "y" * 60_000)))[2]
        client.ws.transport.resume_reading()
        async with asyncio.timeout(10):
            await client.ws.wait_closed()
        assert client.ws.close_code == 1008
    finally:
        await client.close()
        await publisher.close()
    after = await wait_until(
        relay, lambda s: value(s, "fitrelay_connections_closed_total", reason="slow_client") == 1
    )
    assert value(after, "fitrelay_slow_client_disconnects_total") == 1


async def test_indexer_metrics_follow_the_indexer(start_relay: Any) -> None:
    relay: Relay = await start_relay(relay_config(metrics=True, indexer=True))
    alice = Keys(3)
    client = await RawClient.open(url_of(relay))
    try:
        squat = f"33401:{alice.pubkey}:squat"
        record = alice.sign(
            1301,
            "",
            [["d", "r"], ["title", "T"], ["type", "strength"], ["start", "1"], ["end", "2"],
             ["completed", "true"], ["exercise", squat, "", "100", "5", "8", "normal"]],
        )  # fmt: skip
        assert (await client.publish(record))[2] is True
        samples = await wait_until(
            relay, lambda s: value(s, "fitrelay_indexer_unresolved_references") == 1
        )
        assert value(samples, "fitrelay_indexer_events_total") == 1
        assert value(samples, "fitrelay_indexer_lag_events") == 0
        oldest = ("fitrelay_indexer_oldest_unresolved_seconds", frozenset())
        assert 0 <= samples[oldest] < 60  # the record just arrived
        exercise = alice.sign(33401, "", [["d", "squat"], ["title", "Squat"]])
        assert (await client.publish(exercise))[2] is True
        samples = await wait_until(
            relay, lambda s: value(s, "fitrelay_indexer_unresolved_references") == 0
        )
        assert value(samples, "fitrelay_indexer_events_total") == 2
        assert value(samples, "fitrelay_indexer_oldest_unresolved_seconds") == 0
        # The exercise has no format tag: the indexer says so, by reason.
        assert value(samples, "fitrelay_indexer_errors_total", reason="missing_format") == 1
    finally:
        await client.close()


async def test_health_and_readiness_follow_the_database(tmp_path: Path) -> None:
    from relay.storage.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(tmp_path / "pg")
    relay = Relay(relay_config(metrics=True), server.start())
    await relay.start()
    try:
        assert relay.monitor is not None
        port = relay.monitor.port
        assert await http_get(port, "/healthz") == (200, "ok\n")
        assert await http_get(port, "/readyz") == (200, "ready\n")
        assert (await http_get(port, "/nope"))[0] == 404
        server.stop()
        status, body = await http_get(port, "/readyz")
        assert status == 503 and body.startswith("database:")
        assert (await http_get(port, "/healthz"))[0] == 200
        server.start()
        async with asyncio.timeout(30):
            while (await http_get(port, "/readyz"))[0] != 200:
                await asyncio.sleep(0.1)
    finally:
        await relay.stop()
        server.stop()


def contract() -> dict[str, str]:
    """deploy/metrics.txt: family name → type."""
    path = Path(__file__).resolve().parents[2] / "deploy" / "metrics.txt"
    families = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, kind, *_ = line.split()
            families[name] = kind
    return families


async def test_exported_families_are_the_documented_contract(start_relay: Any) -> None:
    relay: Relay = await start_relay(relay_config(metrics=True, indexer=True))
    assert relay.monitor is not None
    _, text = await http_get(relay.monitor.port, "/metrics")
    exported = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert exported == contract()
    documented = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    missing = [name for name in exported if f"`{name}" not in documented]
    assert missing == []


async def test_pool_exhaustion_shows_as_waiting(start_relay: Any) -> None:
    # Without the mirror, whose answers need no pooled connection.
    relay: Relay = await start_relay(relay_config(metrics=True, mirror_events=0))
    assert relay.pool is not None
    size = relay.config.db.pool_max
    held = [await relay.pool.acquire() for _ in range(size)]  # every pooled connection
    client = await RawClient.open(url_of(relay))
    try:
        await client.send(["REQ", "q", {"kinds": [1]}])
        samples = await wait_until(relay, lambda s: value(s, "fitrelay_db_pool_waiting") == 1)
        assert value(samples, "fitrelay_db_pool_connections", state="in_use") == size
        assert value(samples, "fitrelay_db_pool_connections", state="idle") == 0
        for conn in held:
            await relay.pool.release(conn)
        held = []
        assert (await client.expect("EOSE"))[1] == "q"
        samples = await scrape(relay)
        assert value(samples, "fitrelay_db_pool_waiting") == 0
    finally:
        for conn in held:
            await relay.pool.release(conn)
        await client.close()


async def test_garbage_collections_are_counted_and_timed(db_dsn: str) -> None:
    """Each collection stops the event loop: the relay counts them and the time they took,
    by generation, and stops timing them when it stops."""
    callbacks = len(gc.callbacks)
    relay = Relay(relay_config(metrics=True), db_dsn)
    await relay.start()
    try:
        assert len(gc.callbacks) == callbacks + 1
        before = await scrape(relay)
        gc.collect()
        after = await scrape(relay)
        name = "fitrelay_gc_collections_total"
        assert value(after, name, generation="2") == value(before, name, generation="2") + 1
        pause = "fitrelay_gc_pause_seconds_total"
        assert value(after, pause, generation="2") > value(before, pause, generation="2")
        assert ("fitrelay_gc_frozen_objects", frozenset()) in after
    finally:
        await relay.stop()
    assert len(gc.callbacks) == callbacks
