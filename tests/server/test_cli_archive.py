"""``fitrelay import`` and ``fitrelay export`` run as real processes on the test database."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import shutil
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec

from tests.signer import Keys

VALID = Path(__file__).parents[2].parent / "shared/fixtures/real-events/valid.jsonl"
TIMEOUT = 120


def fitrelay() -> list[str]:
    script = Path(sys.executable).parent / "fitrelay"
    if script.exists():
        return [str(script)]
    found = shutil.which("fitrelay")
    return [found] if found else [sys.executable, "-m", "relay"]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("FITRELAY_")}


def run(
    args: Sequence[str], cwd: Path, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*fitrelay(), "--log-level", "WARNING", *args],
        cwd=cwd,
        env=_env(),
        input=stdin,
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )


def run_on_a_terminal(args: Sequence[str], cwd: Path) -> tuple[int, bytes, bytes]:
    """Run with stderr on a pseudo-terminal (100 columns); returns status, stdout, stderr."""
    main, side = pty.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    with tempfile.TemporaryFile(dir=cwd) as stdout:
        try:
            proc = subprocess.Popen(
                [*fitrelay(), "--log-level", "WARNING", *args],
                cwd=cwd,
                env=_env(),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=side,
            )
        finally:
            os.close(side)
        terminal = b""
        while True:
            try:
                chunk = os.read(main, 65_536)
            except OSError:  # EIO: the other side of the terminal is closed everywhere
                break
            if not chunk:
                break
            terminal += chunk
        os.close(main)
        status = proc.wait(TIMEOUT)
        stdout.seek(0)
        return status, stdout.read(), terminal


def valid_expectations() -> tuple[list[bytes], dict[str, int]]:
    """The lines of valid.jsonl the relay stores, and its rejections by reason.

    SOURCES.md: every event there verifies; three have created_at in milliseconds (one of
    them also an integer in a tag); no deletion or replacement in it hits another line.
    """
    now = int(time.time())
    stored: list[bytes] = []
    rejected: dict[str, int] = {}
    for line in VALID.read_bytes().splitlines():
        event = json.loads(line)
        if any(not isinstance(x, str) for tag in event["tags"] for x in tag):
            reason = "invalid: malformed event"
        elif event["created_at"] > now + 900:
            reason = "invalid: created_at is more than 900 seconds in the future"
        elif event["kind"] == 22242:
            reason = "invalid: kind 22242 is sent with AUTH, not EVENT"
        elif 20_000 <= event["kind"] < 30_000:
            reason = "ephemeral: not stored"
        else:
            stored.append(line)
            continue
        rejected[reason] = rejected.get(reason, 0) + 1
    return stored, rejected


def parse_report(text: str) -> tuple[str, dict[str, int], dict[str, int]]:
    """``(first line, {accepted, duplicate, rejected}, {reason prefix: count})``."""
    lines = text.splitlines()
    totals = {}
    for line in lines[1:4]:
        key, _, value = line.partition(": ")
        totals[key] = int(value)
    by_reason = {}
    for line in lines[4:]:
        assert line.startswith("  "), line
        reason, count = line.strip().rsplit(" (line", 1)[0].rsplit(": ", 1)
        by_reason[reason] = int(count)
    return lines[0], totals, by_reason


async def test_import_then_export(db_dsn: str, tmp_path: Path) -> None:
    stored, rejected = valid_expectations()

    done = run(["import", str(VALID), "--db-dsn", db_dsn, "--batch", "10"], tmp_path)

    assert done.returncode == 0, done.stderr
    head, totals, by_reason = parse_report(done.stdout.decode())
    assert head == f"{VALID}: 104 lines"
    assert totals == {"accepted": len(stored), "duplicate": 0, "rejected": sum(rejected.values())}
    assert sum(totals.values()) == 104
    malformed = [r for r in by_reason if r.startswith("invalid: malformed event: ")]
    assert len(malformed) == 1
    by_reason["invalid: malformed event"] = by_reason.pop(malformed[0])
    assert by_reason == rejected
    assert "invalid: created_at is more than 900 seconds in the future: 2 (lines 39, 43)" in (
        done.stdout.decode()
    )
    assert b"import:" not in done.stderr  # no progress bar: stderr is not a terminal

    exported = run(["export", "--db-dsn", db_dsn], tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.splitlines() == stored  # as stored, in file order
    assert exported.stderr.decode().splitlines()[-1] == f"exported {len(stored)} events"

    again = run(["import", str(VALID), "--db-dsn", db_dsn], tmp_path)
    assert again.returncode == 0
    _, totals, _ = parse_report(again.stdout.decode())
    assert totals == {
        "accepted": 0,
        "duplicate": len(stored),
        "rejected": sum(rejected.values()),
    }


async def test_export_with_filter(db_dsn: str, tmp_path: Path) -> None:
    assert run(["import", str(VALID), "--db-dsn", db_dsn], tmp_path).returncode == 0
    stored, _ = valid_expectations()

    done = run(["export", "--db-dsn", db_dsn, "--filter", '{"kinds":[33401]}'], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [s for s in stored if json.loads(s)["kind"] == 33401]
    assert len(done.stdout.splitlines()) == 1

    done = run(["export", "--db-dsn", db_dsn, "--filter", '{"#t":["powr"],"limit":2}'], tmp_path)
    assert done.returncode == 0, done.stderr
    powr = [json.loads(s) for s in stored if ["t", "powr"] in json.loads(s)["tags"]]
    newest = sorted(powr, key=lambda e: (-e["created_at"], e["id"]))[:2]
    assert [json.loads(s) for s in done.stdout.splitlines()] == [e for e in powr if e in newest]


async def test_round_trip_through_a_pipe(db_dsn: str, other_dsn: str, tmp_path: Path) -> None:
    keys = Keys(71)
    now = int(time.time())
    note = keys.sign(1, "note", created_at=now - 5)
    extra = [
        note,
        keys.sign(5, "", [["e", note["id"]]], created_at=now),
        keys.sign(0, '{"name":"x"}', created_at=now - 10),
    ]
    path = tmp_path / "extra.jsonl"
    path.write_bytes(b"".join(msgspec.json.encode(["EVENT", "s", e]) + b"\n" for e in extra))
    assert run(["import", str(VALID), "--db-dsn", db_dsn], tmp_path).returncode == 0
    assert run(["import", str(path), "--db-dsn", db_dsn], tmp_path).returncode == 0

    first = run(["export", "--db-dsn", db_dsn], tmp_path)
    assert first.returncode == 0
    loaded = run(["import", "-", "--db-dsn", other_dsn], tmp_path, stdin=first.stdout)
    assert loaded.returncode == 0, loaded.stderr
    count = len(first.stdout.splitlines())
    assert loaded.stdout.decode().splitlines() == [
        f"stdin: {count} lines",
        f"accepted: {count}",
        "duplicate: 0",
        "rejected: 0",
    ]
    second = run(["export", "--db-dsn", other_dsn], tmp_path)
    assert second.stdout == first.stdout
    assert msgspec.json.encode(note) not in second.stdout  # deleted, and stays so


async def test_report_of_a_small_file(db_dsn: str, tmp_path: Path) -> None:
    keys = Keys(72)
    now = int(time.time())
    good = keys.sign(1, "good", created_at=now)
    bad = dict(keys.sign(1, "bad", created_at=now), sig="00" * 64)
    path = tmp_path / "small.jsonl"
    lines = [good, bad, bad, good, keys.sign(20_000, "typing", created_at=now)]
    path.write_bytes(b"\n".join(msgspec.json.encode(e) for e in lines) + b'\n\nnot json\n["REQ"]\n')
    done = run(["import", "small.jsonl", "--db-dsn", db_dsn], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == (
        "small.jsonl: 7 lines (1 blank skipped)\n"
        "accepted: 1\n"
        "duplicate: 1\n"
        "rejected: 5\n"
        "  invalid: bad signature: 2 (lines 2, 3)\n"
        "  ephemeral: not stored: 1 (line 5)\n"
        "  malformed line: not a JSON object or an EVENT message: 1 (line 7)\n"
        "  malformed line: not an EVENT message: 1 (line 8)\n"
    )


async def test_exit_statuses(db_dsn: str, tmp_path: Path) -> None:
    missing = run(["import", "missing.jsonl", "--db-dsn", db_dsn], tmp_path)
    assert missing.returncode == 1
    assert b"cannot read missing.jsonl: No such file or directory" in missing.stderr
    assert run(["import", str(tmp_path), "--db-dsn", db_dsn], tmp_path).returncode == 1

    (tmp_path / "bad.toml").write_text("[relay]\nno_such_key = 1\n")
    for args in (
        ["import", str(VALID), "--config", "bad.toml", "--db-dsn", db_dsn],
        ["export", "--config", "bad.toml", "--db-dsn", db_dsn],
        ["export", "--db-dsn", db_dsn, "--filter", "{not json"],
        ["export", "--db-dsn", db_dsn, "--filter", '{"kinds":"1"}'],
        ["import", str(VALID), "--db-dsn", db_dsn, "--batch", "0"],
    ):
        done = run(args, tmp_path)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stdout == b""

    unreachable = "postgresql://postgres@127.0.0.1:1/none"
    done = run(["export", "--db-dsn", unreachable], tmp_path)
    assert done.returncode == 1
    assert b"cannot connect to the database" in done.stderr


async def test_config_limits_apply(db_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[relay.limits]\nmax_content_bytes = 10\n")
    keys = Keys(73)
    now = int(time.time())
    path = tmp_path / "in.jsonl"
    path.write_bytes(msgspec.json.encode(keys.sign(1, "far more than ten bytes", created_at=now)))
    done = run(["import", "in.jsonl", "--db-dsn", db_dsn], tmp_path)  # ./config.toml is read
    assert done.returncode == 0
    assert "invalid: content is longer than 10 bytes: 1 (line 1)" in done.stdout.decode()


async def test_progress_bar_only_on_a_terminal(db_dsn: str, tmp_path: Path) -> None:
    status, out, terminal = run_on_a_terminal(["import", str(VALID), "--db-dsn", db_dsn], tmp_path)
    assert status == 0
    assert out.startswith(f"{VALID}: 104 lines".encode())
    assert b"import: 100%" in terminal  # bytes of the file read

    status, out, terminal = run_on_a_terminal(["export", "--db-dsn", db_dsn], tmp_path)
    assert status == 0
    assert len(out.splitlines()) > 0
    assert b"export: 100%" in terminal
    assert b"exported " in terminal
