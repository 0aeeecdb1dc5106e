"""Fuzzing the frame path over a real socket: a ``fitrelay serve`` process gets the fuzzed
frames of :mod:`tests.property.test_fuzz_session` (and binary frames) on one connection.
After each frame a probe REQ must come back with its EOSE, and everything the relay sent
before it must be a relay message of NIP-01, -42, -45 or -77: every input is answered per
protocol, and the connection stays usable unless RFC 6455 says it closes."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.conftest import with_database
from tests.property.test_fuzz_session import frames

RELAY_VERBS = {"EVENT", "OK", "EOSE", "CLOSED", "NOTICE", "COUNT", "AUTH", "NEG-MSG", "NEG-ERR"}
PROTOCOL_CLOSES = {1009}
"""A message over twice ``max_message_bytes`` closes the connection (RFC 6455 1009)."""
LISTENING = re.compile(r"listening on (ws://[\d.]+:\d+)")
_probes = itertools.count()


async def _create(server_dsn: str, name: str, *, drop: bool = False) -> None:
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop:
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


@pytest.fixture(scope="module")
def relay_url(server_dsn: str) -> Iterator[str]:
    """A relay process of this module's own, on a database of its own."""
    name = f"fitrelay_fuzz_{os.getpid()}"
    asyncio.run(_create(server_dsn, name))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FITRELAY_")}
    env["FITRELAY_METRICS_LISTEN"] = ""
    proc = subprocess.Popen(
        [sys.executable, "-m", "relay", "serve", "--port", "0",
         "--db-dsn", with_database(server_dsn, name)],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    found = threading.Event()
    url: list[str] = []
    lines: list[str] = []

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            match = LISTENING.search(line)
            if match and not url:
                url.append(match.group(1))
                found.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        assert found.wait(60), "".join(lines)
        yield url[0]
        assert proc.poll() is None, "the relay died:\n" + "".join(lines[-50:])
        errors = [line for line in lines if "Traceback" in line or " ERROR " in line]
        assert not errors, "".join(lines[-80:])
    finally:
        proc.terminate()
        proc.wait(30)
        reader.join(10)
        proc.stderr.close()
        asyncio.run(_create(server_dsn, name, drop=True))


class Link:
    """One connection, reopened only after a close the protocol calls for."""

    def __init__(self, url: str, stack: contextlib.ExitStack) -> None:
        self.url = url
        self.stack = stack
        self.ws: ClientConnection | None = None
        self.sent: list[str | bytes] = []
        """What this connection was sent, to tell the story of a failure."""

    def open(self) -> ClientConnection:
        if self.ws is None:
            self.ws = self.stack.enter_context(connect(self.url, max_size=None, open_timeout=10))
        return self.ws


@pytest.fixture(scope="module")
def link(relay_url: str) -> Iterator[Link]:
    with contextlib.ExitStack() as stack:
        yield Link(relay_url, stack)


def exchange(link: Link, frame: str | bytes) -> list[Any]:
    """Send ``frame`` then a probe; what the relay sent up to the probe's EOSE."""
    ws = link.open()
    probe = f"probe-{next(_probes)}"
    replies: list[Any] = []
    link.sent.append(frame if len(frame) < 300 else frame[:300])
    try:
        ws.send(frame)
        ws.send(json.dumps(["REQ", probe, {"limit": 0}]))
        while True:
            try:
                message = ws.recv(timeout=10)
            except TimeoutError:
                raise AssertionError(f"no EOSE for the probe; sent: {link.sent[-30:]}") from None
            assert isinstance(message, str), message
            reply = json.loads(message)
            assert isinstance(reply, list) and reply and reply[0] in RELAY_VERBS, reply
            if reply[:2] == ["EOSE", probe]:
                ws.send(json.dumps(["CLOSE", probe]))  # or the probes fill max_subscriptions
                return replies
            assert reply[:2] != ["CLOSED", probe], (reply, link.sent[-30:])
            replies.append(reply)
    except ConnectionClosed as closed:
        link.ws = None
        link.sent.clear()
        code = closed.rcvd.code if closed.rcvd is not None else None
        assert code in PROTOCOL_CLOSES, f"closed with {code} after {frame[:200]!r}"
        return replies


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=st.one_of(frames(), st.binary(max_size=64)))
@example(frame="[" * 100_000)
@example(frame='["EVENT",' + "[" * 5000 + "]" * 5000 + "]")
@example(frame="x" * 600_000)
@example(frame=b"\x00\xff")
@example(frame='["NEG-OPEN","n",{},"6100000200"]')
def test_every_frame_over_a_socket_is_answered(link: Link, frame: str | bytes) -> None:
    replies = exchange(link, frame)
    if isinstance(frame, bytes):
        # (a NEG-MSG of an earlier NEG-OPEN may come first: its items load on their own)
        assert ["NOTICE", "invalid: binary frames are not supported"] in replies, replies
