"""Bad input over a real connection: every case gets an answer and the connection lives on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from relay.app import Relay
from tests.client import RawClient
from tests.conftest import relay_config, url_of
from tests.signer import Keys


async def still_usable(client: RawClient) -> None:
    event = Keys(99).sign(1, "still here")
    assert (await client.publish(event))[2] is True


@pytest.mark.parametrize(
    "text",
    [
        "",
        "null",
        "hello",
        "{}",
        "[]",
        '["EVENT"]',
        '["REQ", 1]',
        '["FOO", "bar"]',
        '["EVENT", {"id": 1}]',
        '["REQ", "s", {"kinds": [1e400]}]',
        '["REQ", "s", {"since": 123456789012345678901234567890}]',
        '["COUNT", "c", {"ids": ["xyz"]}]',
        "[" * 100_000 + "]" * 100_000,
        '["EVENT", ' + '{"a":' * 20_000 + "1" + "}" * 20_000 + "]",
        # about 1,000 levels, in every place a message can nest
        '["EVENT", ' + "[" * 1_000 + "]" * 1_000 + "]",
        '["EVENT", {"id": "' + "ab" * 32 + '", "tags": ' + "[" * 1_000 + "]" * 1_000 + "}]",
        '["REQ", "s", {"#t": ' + "[" * 1_000 + "]" * 1_000 + "}]",
        '["COUNT", "c", ' + '{"a":' * 1_000 + "1" + "}" * 1_000 + "]",
        '["CLOSE", ' + "[" * 1_000 + "]" * 1_000 + "]",
        # a repeated key: OK false, not stored
        '["EVENT", {"id": "' + "ab" * 32 + '", "content": "A", "content": "B"}]',
    ],
)
async def test_garbage_then_still_usable(client: RawClient, text: str) -> None:
    await client.send_text(text)
    reply = await client.recv()
    assert reply[0] in ("NOTICE", "CLOSED", "OK"), reply
    assert "invalid: " in reply[-1], reply
    await still_usable(client)


async def test_binary_frame_gets_notice(client: RawClient) -> None:
    await client.ws.send(b'["REQ","s",{}]')
    assert await client.recv() == ["NOTICE", "invalid: binary frames are not supported"]
    await still_usable(client)


async def test_invalid_utf8_closes_with_1007(client: RawClient) -> None:
    # A text frame whose payload is not UTF-8: RFC 6455 requires failing the connection.
    client.ws.protocol.send_text(b'["REQ","\xff\xfe",{}]')
    client.ws.send_data()
    with pytest.raises(ConnectionClosed) as closed:
        await client.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007


async def test_oversized_message(start_relay: Callable[..., Any]) -> None:
    relay: Relay = await start_relay(relay_config(limits={"max_message_bytes": 1000}))
    client = await RawClient.open(url_of(relay))
    try:
        event = Keys(1).sign(1, "x" * 1200)
        assert await client.publish(event) == [
            "OK",
            event["id"],
            False,
            "invalid: message is larger than 1000 bytes",
        ]
        await still_usable(client)
        # Far past the limit, the WebSocket layer refuses the frame itself (close 1009).
        await client.send_text('["NOTICE","' + "y" * 5000 + '"]')
        with pytest.raises(ConnectionClosed) as closed:
            await client.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    finally:
        await client.close()


async def test_process_survives_and_nothing_stored_is_touched(
    relay: Relay, client: RawClient, connect: Callable[..., Any]
) -> None:
    keys = Keys(2)
    kept = keys.sign(1, "kept")
    await client.publish(kept)
    for text in ("[", '["EVENT", {"id": "' + kept["id"] + '", "kind": 5}]', '["CLOSE", {}]'):
        await client.send_text(text)
        await client.recv()
    other = await connect()
    assert await other.req("s", {"ids": [kept["id"]]}) == [kept]


async def test_a_repeated_key_is_never_stored(client: RawClient) -> None:
    """Signed over the last ``content``, shown as the first by some parsers: refused."""
    import msgspec

    event = Keys(7).sign(1, "B")
    text = msgspec.json.encode(event).decode()
    forged = text.replace('"content":"B"', '"content":"A","content":"B"')
    assert forged != text
    await client.send_text(f'["EVENT",{forged}]')
    reply = await client.expect("OK")
    assert reply[1:] == [
        event["id"],
        False,
        "invalid: malformed event: a key appears twice in one object",
    ]
    assert await client.req("s", {"ids": [event["id"]]}) == []
    await still_usable(client)
