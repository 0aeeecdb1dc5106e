"""``python -m bench.sync`` on a small set: both syncs end with every upstream event stored
here, negentropy transfers exactly the difference while the REQ copy transfers everything,
and the fetcher completes each template."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_sync_bench_transfers_only_the_difference(tmp_path: Path, server_dsn: str) -> None:
    cmd = [sys.executable, "-m", "bench.sync", "--events", "600", "--templates", "2",
           "--dsn", server_dsn, "--results-dir", str(tmp_path), "--no-doc"]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads(done.stdout[: done.stdout.index("<!-- sync:start -->")])
    assert results["left_out"] == 6
    neg, req = results["negentropy"], results["req"]
    assert (neg["method"], neg["need"], neg["fetched"], neg["stored_after"]) == (
        "negentropy", 6, 6, 600,
    )  # fmt: skip
    assert (req["method"], req["need"], req["fetched"], req["duplicate"]) == ("req", 600, 6, 594)
    assert req["stored_after"] == 600
    assert neg["bytes_received"] < req["bytes_received"] / 3
    assert results["fetcher"]["templates"] == 2
    assert results["fetcher"]["max_s"] < 30
