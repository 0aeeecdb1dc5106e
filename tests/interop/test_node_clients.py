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
from pathlib import Path

import pytest

from relay.app import Relay
from tests.conftest import url_of

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


async def run_script(node: str, script: str, url: str) -> tuple[int, str]:
    """Run one check script against ``url``; return its exit code and combined output."""
    proc = await asyncio.create_subprocess_exec(
        node,
        script,
        url,
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
