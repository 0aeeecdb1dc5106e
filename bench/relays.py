"""The relays under test: fresh databases, starting and stopping, and fitrelay's importer.

fitrelay runs from this checkout (``python -m relay serve``) with a temporary config file;
nostr-relay 1.14 runs from its own virtual environment under ``bench/.cache`` (created on
first use with pip), on PostgreSQL through SQLAlchemy and asyncpg, under gunicorn with one
uvicorn worker as its ``serve`` command does by default. strfry (C++, LMDB) is built once by
hand with ``../shared/peers/strfry/build.sh`` and found by ``--strfry-bin`` or ``STRFRY_BIN``;
it runs with ``../shared/peers/strfry/strfry.conf.tmpl`` on an LMDB directory of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

__all__ = [
    "NOSTR_RELAY_SPEC",
    "RelayProcess",
    "RelayUnavailable",
    "backend_pids",
    "create_database",
    "drop_database",
    "ensure_nostr_relay_venv",
    "find_strfry",
    "run_fitrelay_import",
    "start_fitrelay",
    "start_nostr_relay",
    "start_strfry",
    "vacuum_analyze",
]

ROOT = Path(__file__).resolve().parents[1]
STRFRY_CONF = ROOT.parent / "shared" / "peers" / "strfry" / "strfry.conf.tmpl"
NOSTR_RELAY_SPEC = ["nostr-relay==1.14", "asyncpg"]
_LISTENING = re.compile(r"listening on (ws://\S+)")


class RelayUnavailable(Exception):
    """A relay under test could not be installed or started; the message says why."""


@dataclass
class RelayProcess:
    name: str
    url: str
    pid: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    dsn: str
    database: str
    default_limit: int
    max_limit: int
    info: dict[str, Any] = field(default_factory=dict)
    metrics: str | None = None
    """host:port of its /metrics (fitrelay, where the checkout exports them)."""

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL to the process group it leads if it is still running."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        # Children (gunicorn workers) share the group; make sure none is left behind.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)


# -- databases -------------------------------------------------------------------------------


def with_database(dsn: str, name: str) -> str:
    parts = urllib.parse.urlsplit(dsn)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


async def create_database(admin_dsn: str, name: str) -> str:
    """Create database ``name`` (dropping a leftover of that name) and return its DSN."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(admin_dsn, name)


async def drop_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def vacuum_analyze(dsn: str) -> float:
    """VACUUM ANALYZE the whole database (so plans do not depend on autovacuum's timing),
    then CHECKPOINT (so the first queries measured do not share the disk with the writing
    out of everything the load dirtied)."""
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM (ANALYZE)")
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CHECKPOINT")  # superuser or pg_checkpoint only
    finally:
        await conn.close()
    return time.perf_counter() - started


async def backend_pids(admin_dsn: str, database: str) -> list[int]:
    """Server processes connected to ``database`` (the relay's pool, its listener...)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
    finally:
        await conn.close()
    return [int(r["pid"]) for r in rows]


async def database_size(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT pg_database_size(current_database())"))
    finally:
        await conn.close()


# -- processes -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env(src: Path | None = None) -> dict[str, str]:
    """The environment without FITRELAY_* overrides; with ``src``, its packages first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FITRELAY_")}
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    return env


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _wait_tcp(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RelayUnavailable(f"exited with status {proc.returncode}:\n{_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.2)
    raise RelayUnavailable(f"not listening on port {port} after {timeout:.0f} s:\n{_tail(log)}")


def _toml(tree: dict[str, Any], prefix: str = "") -> str:
    """``tree`` (tables of scalars and lists) as TOML text."""
    scalars = [f"{k} = {json.dumps(v)}" for k, v in tree.items() if not isinstance(v, dict)]
    text = f"[{prefix}]\n" + "".join(line + "\n" for line in scalars) if prefix else ""
    for key, value in tree.items():
        if isinstance(value, dict):
            text += "\n" + _toml(value, f"{prefix}.{key}" if prefix else key)
    return text


def _merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        old = out.get(key)
        out[key] = (
            _merged(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
        )
    return out


def _fitrelay_config(
    path: Path,
    indexer: bool,
    src: Path,
    workers: int = 1,
    compression: bool = False,
    extra: dict[str, Any] | None = None,
) -> str | None:
    """A config file for the run (``extra`` merged over it: ``--fitrelay-config``); the
    metrics listener (where this checkout has one) gets a free port so that runs never
    collide with another relay on the machine, and its host:port is returned (None without
    one). Several workers share one fixed port, a free one."""
    relay: dict[str, Any] = {"host": "127.0.0.1", "port": _free_port() if workers > 1 else 0}
    if workers > 1:
        relay["workers"] = workers
    if compression:
        relay["compression"] = True
    tree = _merged({"relay": relay, "indexer": {"enabled": indexer}}, extra or {})
    base = _toml(tree)
    metrics = f"127.0.0.1:{_free_port()}"
    path.write_text(base + f'\n[metrics]\nlisten = "{metrics}"\n')
    check = subprocess.run(
        [sys.executable, "-m", "relay", "check-config", "--config", str(path)],
        cwd=src,
        env=_clean_env(src),
        capture_output=True,
        text=True,
        check=False,
    )
    if check.returncode != 0:
        path.write_text(base)
        return None
    return metrics


def start_fitrelay(
    dsn: str,
    database: str,
    run_dir: Path,
    *,
    indexer: bool,
    src: Path = ROOT,
    workers: int = 1,
    compression: bool = False,
    extra: dict[str, Any] | None = None,
) -> RelayProcess:
    """``python -m relay serve`` from the checkout ``src`` (this one by default)."""
    name = "fitrelay+indexer" if indexer else "fitrelay"
    config = run_dir / f"{name}.toml"
    metrics = _fitrelay_config(config, indexer, src, workers, compression, extra)
    log = run_dir / f"{name}.log"
    cmd = [sys.executable, "-m", "relay", "serve", "--config", str(config), "--db-dsn", dsn]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=src,
            env=_clean_env(src),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        match = _LISTENING.search(log.read_text(errors="replace"))
        if match:
            relay = RelayProcess(
                name, match.group(1), proc.pid, proc, log, dsn, database, 500, 5000
            )
            relay.info = {"command": " ".join(cmd), "config": config.read_text()}
            relay.metrics = metrics
            return relay
        if proc.poll() is not None:
            raise RelayUnavailable(f"{name} exited with status {proc.returncode}:\n{_tail(log)}")
        time.sleep(0.1)
    proc.terminate()
    raise RelayUnavailable(f"{name} did not log 'listening on' within 120 s:\n{_tail(log)}")


def run_fitrelay_import(dsn: str, path: Path, log: Path, src: Path = ROOT) -> dict[str, Any]:
    """``python -m relay import --db-dsn DSN FILE``, timed; the printed counts parsed."""
    cmd = [sys.executable, "-m", "relay", "--log-level", "WARNING", "import"]
    cmd += ["--db-dsn", dsn, str(path)]
    started = time.perf_counter()
    done = subprocess.run(
        cmd, cwd=src, env=_clean_env(src), capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    log.write_text(done.stdout + done.stderr)
    counts = {
        key: int(m.group(1))
        for key in ("accepted", "duplicate", "rejected")
        if (m := re.search(rf"^{key}: (\d+)", done.stdout, re.M))
    }
    events = sum(counts.values())
    return {
        "command": " ".join(cmd),
        "status": done.returncode,
        "seconds": round(seconds, 2),
        "counts": counts,
        "events_per_s": round(events / seconds, 1) if seconds > 0 and events else 0.0,
        "output_tail": (done.stdout + done.stderr)[-600:] if done.returncode else "",
    }


# -- nostr-relay ------------------------------------------------------------------------------


def ensure_nostr_relay_venv(cache_dir: Path, log: Path) -> tuple[Path, dict[str, str]]:
    """The virtual environment with nostr-relay 1.14 (created with pip on first use) and the
    versions of the packages that matter."""
    venv = cache_dir / "nostr-relay-venv"
    marker = venv / ".bench-installed"
    spec = " ".join(NOSTR_RELAY_SPEC)
    if not (marker.exists() and marker.read_text() == spec):
        steps = [
            [sys.executable, "-m", "venv", "--clear", str(venv)],
            [str(venv / "bin" / "pip"), "install", "--quiet", *NOSTR_RELAY_SPEC],
        ]
        with log.open("ab") as out:
            for step in steps:
                done = subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, check=False)
                if done.returncode != 0:
                    raise RelayUnavailable(
                        f"`{' '.join(step)}` failed with status {done.returncode}:\n{_tail(log)}"
                    )
        marker.write_text(spec)
    packages = ("nostr-relay", "SQLAlchemy", "asyncpg", "uvicorn", "gunicorn", "websockets")
    script = (
        "import importlib.metadata as m;"
        f"print(';'.join(p + '=' + m.version(p) for p in {packages!r}))"
    )
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c", script],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        raise RelayUnavailable(f"nostr-relay's environment is broken:\n{probe.stderr[-800:]}")
    versions = dict(item.split("=", 1) for item in probe.stdout.strip().split(";"))
    return venv, versions


_NOSTR_RELAY_CONFIG = """\
# nostr-relay 1.14 for the benchmark: its defaults, on PostgreSQL; logging at WARNING.
DEBUG: false
relay_name: nostr-relay (benchmark)
storage:
  sqlalchemy.url: {url}
  num_concurrent_reqs: 10   # the code's defaults
  num_concurrent_adds: 4
  validators:
    - nostr_relay.validators.is_signed
gunicorn:
  bind: 127.0.0.1:{port}
  workers: 1
  loglevel: warning
  graceful_timeout: 5
max_event_size: 131072      # content bytes; the default 4096 refuses long notes
oldest_event: 3153600000    # accept the generated history (default: one year)
subscription_limit: 32
max_limit: 5000             # as fitrelay's max_limit
message_timeout: 1800
logging:
  version: 1
  formatters:
    simple:
      format: "%(asctime)s %(name)s %(levelname)s %(message)s"
  handlers:
    console:
      class: logging.StreamHandler
      formatter: simple
      stream: ext://sys.stderr
  loggers:
    nostr_relay:
      level: WARNING
      handlers: [console]
      propagate: false
  root:
    level: WARNING
    handlers: [console]
"""


def start_nostr_relay(venv: Path, dsn: str, database: str, run_dir: Path) -> RelayProcess:
    parts = urllib.parse.urlsplit(dsn)
    url = urllib.parse.urlunsplit(parts._replace(scheme="postgresql+asyncpg"))
    port = _free_port()
    config = run_dir / "nostr-relay.yaml"
    config.write_text(_NOSTR_RELAY_CONFIG.format(url=url, port=port))
    log = run_dir / "nostr-relay.log"
    cmd = [str(venv / "bin" / "nostr-relay"), "-c", str(config), "serve"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=run_dir,
            env=_clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_tcp(port, proc, log, 120)
    except RelayUnavailable:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise
    relay = RelayProcess(
        "nostr-relay", f"ws://127.0.0.1:{port}", proc.pid, proc, log, dsn, database, 5000, 5000
    )
    relay.info = {"command": " ".join(cmd), "config": config.read_text()}
    return relay


# -- strfry -----------------------------------------------------------------------------------


_STRFRY_OLDEST = "rejectEventsOlderThanSeconds = 3153600000"


def find_strfry(given: Path | None) -> Path:
    """The strfry binary: ``given``, else ``$STRFRY_BIN``; why not, when there is none."""
    binary = given or (Path(os.environ["STRFRY_BIN"]) if os.environ.get("STRFRY_BIN") else None)
    if binary is None:
        raise RelayUnavailable(
            "no strfry binary: build it with ../shared/peers/strfry/build.sh DEST and pass"
            " --strfry-bin DEST/strfry (or set STRFRY_BIN)"
        )
    if not os.access(binary, os.X_OK):
        raise RelayUnavailable(f"{binary} is not an executable strfry binary")
    if not STRFRY_CONF.exists():
        raise RelayUnavailable(f"{STRFRY_CONF} (strfry's benchmark config) is missing")
    return binary


def start_strfry(binary: Path, run_dir: Path) -> RelayProcess:
    """``strfry relay`` on a fresh LMDB directory under ``run_dir``, with the benchmark
    config (strfry's defaults; maxFilterLimit 5000 as fitrelay's max_limit)."""
    db = run_dir / "strfry-db"
    db.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    config = run_dir / "strfry.conf"
    text = STRFRY_CONF.read_text().replace("@DB@", f"{db}/").replace("@PORT@", str(port))
    # The generated history reaches back further than strfry's default of three years; as
    # for nostr-relay's oldest_event, accept it (the only change to strfry's defaults).
    text, n = re.subn(r"rejectEventsOlderThanSeconds = \d+", _STRFRY_OLDEST, text)
    if n != 1:
        raise RelayUnavailable(f"{STRFRY_CONF} has no rejectEventsOlderThanSeconds to set")
    config.write_text(text)
    log = run_dir / "strfry.log"
    cmd = [str(binary), "--config", str(config), "relay"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=run_dir,
            env=_clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_tcp(port, proc, log, 60)
    except RelayUnavailable:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise
    url = f"ws://127.0.0.1:{port}"
    relay = RelayProcess("strfry", url, proc.pid, proc, log, "", "", 5000, 5000)
    relay.info = {
        "command": " ".join(cmd),
        "config": f"{STRFRY_CONF} with @DB@={db}/, @PORT@={port}, {_STRFRY_OLDEST}",
    }
    return relay
