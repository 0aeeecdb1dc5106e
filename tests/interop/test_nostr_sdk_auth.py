"""rust-nostr (``nostr_sdk``) authenticates by itself (NIP-42) to a relay that requires it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from nostr_sdk import (
    ClientBuilder,
    EventBuilder,
    Filter,
    Keys,
    Kind,
    RelayUrl,
    ReqTarget,
    SignerAuthenticator,
    Tag,
    uniffi_set_event_loop,
)

from tests.server.test_auth_policy import free_port, policy_config

pytestmark = pytest.mark.interop

TIMEOUT = timedelta(seconds=10)


async def test_sdk_authenticates_to_publish_and_read(start_relay: Callable[..., Any]) -> None:
    port = free_port()
    await start_relay(policy_config(port, auth={"required": "all"}))
    relay_url = RelayUrl.parse(f"ws://127.0.0.1:{port}")
    keys = Keys.generate()
    # The SDK signs the AUTH event through a Python callback run from its own threads.
    uniffi_set_event_loop(asyncio.get_running_loop())
    client = ClientBuilder().authenticator(SignerAuthenticator(keys)).build()
    try:
        await client.add_relay(relay_url)
        output = await client.try_connect(TIMEOUT)
        assert output.success == [relay_url], output.failed
        # Protected (NIP-70): accepted only because the SDK authenticated as its author.
        event = (
            EventBuilder(Kind(1301), "5 km easy")
            .tags([Tag.identifier("run-1"), Tag.protected()])
            .finalize(keys)
        )
        sent = await client.send_event(event, ok_timeout=TIMEOUT, authentication_timeout=TIMEOUT)
        assert sent.failed == {}, sent.failed
        assert sent.success == [relay_url]
        target = ReqTarget.single(relay_url, [Filter().author(keys.public_key())])
        found = await client.fetch_events(target, TIMEOUT)
        assert [e.as_json() for e in found] == [event.as_json()]
    finally:
        await client.shutdown()
        uniffi_set_event_loop(None)  # type: ignore[arg-type]
