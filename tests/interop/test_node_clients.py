"""Interoperability with JavaScript clients: nostr-tools and NDK, run under Node.

Each script in ``tests/interop/node`` publishes, queries, counts and subscribes against the
relay the test starts, verifying every signature it gets back, and exits 0 only if every
answer was right. The npm dependencies are pinned by ``package-lock.json`` and installed with
``npm ci`` the first time they are missing.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from relay.app import Relay
from relay.nostr.event import decode_event
from relay.nostr.filters import Filter
from relay.storage.postgres import Store
from tests.conftest import url_of
from tests.signer import Keys, dumps

pytestmark = pytest.mark.interop

NODE_DIR = Path(__file__).parent / "node"
SCRIPT_TIMEOUT = 60.0
INSTALL_TIMEOUT = 600.0


@pytest.fixture(scope="session")
def node() -> str:
    """The ``node`` executable, with the scripts' dependencies installed."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH: the JavaScript client checks need Node.js 20+")
    # npm writes node_modules/.package-lock.json last, so its presence means a finished install.
    if not (NODE_DIR / "node_modules" / ".package-lock.json").is_file():
        npm = shutil.which("npm")
        assert npm is not None, f"node is on PATH but npm is not; run `npm ci` in {NODE_DIR}"
        try:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=NODE_DIR,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"npm ci in {NODE_DIR} took more than {INSTALL_TIMEOUT:.0f} s")
        assert done.returncode == 0, (
            f"npm ci in {NODE_DIR} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    return node


async def run_script(node: str, script: str, url: str, *args: str) -> tuple[int, str]:
    """Run one check script against ``url``; return its exit code and combined output."""
    proc = await asyncio.create_subprocess_exec(
        node,
        script,
        url,
        *args,
        cwd=NODE_DIR,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(SCRIPT_TIMEOUT):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        pytest.fail(
            f"{script} did not finish within {SCRIPT_TIMEOUT:.0f} s; output:\n"
            + out.decode(errors="replace")
        )
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


@pytest.mark.parametrize("script", ["nostr_tools_check.mjs", "ndk_check.mjs"])
async def test_node_client(node: str, relay: Relay, script: str) -> None:
    code, output = await run_script(node, script, url_of(relay))
    assert code == 0, f"{script} exited with {code}; output:\n{output}"
    assert "OK [" in output, output


async def test_nostr_tools_negentropy(
    node: str, relay: Relay, store: Store, tmp_path: Path
) -> None:
    """nostr-tools' NIP-77 client reconciles its sets against the relay's, exactly."""
    keys = Keys()
    stored = [keys.sign(1301, f"stored {i}", created_at=1_700_000_000 + i // 4) for i in range(600)]
    others = [keys.sign(1301, f"local {i}", created_at=1_700_000_010 + i) for i in range(30)]
    await store.ingest(
        [decode_event(dumps(e).encode()) for e in stored], [dumps(e) for e in stored]
    )

    def items(events: list[dict[str, Any]]) -> list[list[Any]]:
        return [[e["created_at"], e["id"]] for e in events]

    def ids(events: list[dict[str, Any]]) -> list[str]:
        return [e["id"] for e in events]

    flt = {"kinds": [1301], "authors": [keys.pubkey]}
    cases = [
        {"name": "equal", "filter": flt, "local": items(stored), "have": [], "need": []},
        {"name": "empty client", "filter": flt, "local": [], "have": [], "need": ids(stored)},
        {
            "name": "both differ",
            "filter": flt,
            "local": items(stored[50:] + others),
            "have": ids(others),
            "need": ids(stored[:50]),
        },
        {
            "name": "empty relay",
            "filter": {"kinds": [1301], "authors": [Keys().pubkey]},
            "local": items(others),
            "have": ids(others),
            "need": [],
        },
    ]
    spec = tmp_path / "cases.json"
    spec.write_text(dumps(cases))
    code, output = await run_script(node, "nip77_check.mjs", url_of(relay), str(spec))
    assert code == 0, f"nip77_check.mjs exited with {code}; output:\n{output}"
    assert "OK [nostr-tools nip77]" in output, output


async def test_nostr_tools_negentropy_both_ways(
    node: str, relay: Relay, store: Store, tmp_path: Path
) -> None:
    """nostr-tools reconciles, then carries the difference out both ways: it fetches what only
    the relay has and publishes what only it has, after which the two sets are equal. One
    case matches 10,000 events and differs by 1 % on each side (the 100k figure is a bench:
    `python -m bench.sync`)."""

    def records(keys: Keys, count: int, start: int, label: str) -> list[dict[str, Any]]:
        return [keys.sign(1301, f"{label} {i}", created_at=start + i // 3) for i in range(count)]

    def items(events: list[dict[str, Any]]) -> list[list[Any]]:
        return [[e["created_at"], e["id"]] for e in events]

    def ids(events: list[dict[str, Any]]) -> list[str]:
        return [e["id"] for e in events]

    cases: list[dict[str, Any]] = []
    on_relay: list[dict[str, Any]] = []
    uploads: list[dict[str, Any]] = []

    def case(name: str, shared: int, relay_only: int, client_only: int) -> None:
        keys = Keys()
        common = records(keys, shared, 1_700_000_000, "shared")
        theirs = records(keys, relay_only, 1_700_000_000 + shared // 6, "relay only")
        mine = records(keys, client_only, 1_700_000_000 + shared // 5, "client only")
        on_relay.extend(common + theirs)
        uploads.extend(mine)
        cases.append({
            "name": name, "filter": {"kinds": [1301], "authors": [keys.pubkey]},
            "local": items(common + mine), "have": ids(mine), "need": ids(theirs),
            "upload": mine,
        })  # fmt: skip

    case("client has more", 300, 0, 40)
    case("relay has more", 300, 60, 0)
    case("both differ", 500, 25, 35)
    case("empty client", 0, 80, 0)
    case("empty relay", 0, 0, 30)
    case("10k events, 1 % differ each way", 9_900, 100, 100)
    await store.ingest(
        [decode_event(dumps(e).encode()) for e in on_relay], [dumps(e) for e in on_relay]
    )
    spec = tmp_path / "cases.json"
    spec.write_text(dumps(cases))
    code, output = await run_script(node, "nip77_check.mjs", url_of(relay), str(spec))
    assert code == 0, f"nip77_check.mjs exited with {code}; output:\n{output}"
    assert f"OK [nostr-tools nip77] {len(cases)} cases" in output, output
    wanted = Filter(ids=frozenset(ids(uploads)), limit=len(uploads))
    stored = await store.query([wanted], int(time.time()))
    assert {event_id.hex() for event_id, _raw in stored} == set(ids(uploads))
