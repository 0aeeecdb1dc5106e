from __future__ import annotations

from tests.client import RawClient
from tests.signer import Keys


async def test_publish_then_query(client: RawClient) -> None:
    keys = Keys(1)
    event = keys.sign(1, "hello")
    assert await client.publish(event) == ["OK", event["id"], True, ""]
    assert await client.req("s", {"ids": [event["id"]]}) == [event]
