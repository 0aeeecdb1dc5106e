"""kill -9 of ``fitrelay serve`` while a publisher has many EVENTs in flight: every event
that got OK true is stored after the restart (OK is sent only after COMMIT)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.client import RawClient
from tests.faults.ingest import Publisher, start, stored_ids
from tests.signer import Keys

EVENTS = 3_000
WINDOW = 500


async def test_kill_9_during_windowed_ingest_loses_nothing_acknowledged(
    db_dsn: str, tmp_path: Path
) -> None:
    keys = Keys(61)
    events = [keys.sign(1, f"in flight {i}", created_at=1_700_000_000 + i) for i in range(EVENTS)]
    relay = await start("serve", db_dsn, tmp_path)
    client = await RawClient.open(relay.url)
    publisher = Publisher(client, WINDOW)
    sending = asyncio.create_task(publisher.publish(events))
    try:
        await publisher.until(lambda: len(publisher.acknowledged) >= 200)  # well into it
        relay.kill()
        assert await relay.wait() == -9
        async with asyncio.timeout(30):
            await sending
    finally:
        await client.close()
    assert publisher.closed, "the connection ended with the process"
    unanswered = EVENTS - len(publisher.acknowledged) - len(publisher.refused)
    assert unanswered > 0, "the kill came while events were in flight"

    relay = await start("serve", db_dsn, tmp_path)  # the restart
    try:
        reader = await RawClient.open(relay.url)
        ids = sorted(publisher.acknowledged)
        served = {e["id"] for e in await reader.req("r", {"ids": ids[:500]})}
        await reader.close()
    finally:
        assert await relay.stop() == 0
    stored = await stored_ids(db_dsn, publisher.acknowledged)
    lost = publisher.acknowledged - stored
    print(
        f"kill -9: {len(publisher.acknowledged)} acknowledged, {unanswered} unanswered,"
        f" {len(lost)} lost"
    )
    assert not lost
    assert served == set(ids[:500])
