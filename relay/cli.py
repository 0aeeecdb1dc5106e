"""The ``fitrelay`` command line. Parsing and wiring only; the work lives in the packages."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import asyncpg

from relay.config import Config, ConfigError, load
from relay.server.app import Relay
from relay.storage.migrate import migrate

__all__ = ["main"]

log = logging.getLogger("relay")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fitrelay", description=__doc__)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    commands = parser.add_subparsers(dest="command", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--config", type=Path, help="TOML file (default ./config.toml if any)")
        sub.add_argument("--db-dsn", help="PostgreSQL DSN; none runs an embedded PostgreSQL")
        sub.add_argument("--data-dir", help="where the embedded PostgreSQL keeps its data")

    serve = commands.add_parser("serve", help="run the relay")
    common(serve)
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default 7447)")
    common(commands.add_parser("migrate", help="apply database migrations and exit"))
    common(commands.add_parser("check-config", help="validate the configuration and exit"))
    return parser


def _config(args: argparse.Namespace) -> Config:
    path: Path | None = args.config
    if path is None and Path("config.toml").is_file():
        path = Path("config.toml")
    return load(
        path,
        overrides={
            ("db", "dsn"): args.db_dsn,
            ("db", "data_dir"): args.data_dir,
            ("relay", "host"): getattr(args, "host", None),
            ("relay", "port"): getattr(args, "port", None),
        },
    )


@contextlib.contextmanager
def database(config: Config) -> Iterator[str]:
    """The configured DSN, or an embedded PostgreSQL started for the duration."""
    if config.db.dsn:
        yield config.db.dsn
        return
    from relay.storage.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(config.data_path / "postgres")
    try:
        yield server.start()
    finally:
        server.stop()


def _terminate_as_exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _run(coro: object) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        asyncio.run(coro)  # type: ignore[arg-type]
    else:
        uvloop.run(coro)  # type: ignore[arg-type]


async def _serve(config: Config, dsn: str) -> None:
    relay = Relay(config, dsn)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await relay.start()
    try:
        await stop.wait()
        log.info("stopping")
    finally:
        await relay.stop()


async def _migrate(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        applied = await migrate(conn)
    finally:
        await conn.close()
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none needed'}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = _config(args)
    except ConfigError as exc:
        print(f"fitrelay: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print("configuration is valid")
        return 0
    # SIGTERM before the event loop runs (e.g. while the embedded database starts) must still
    # unwind through the finally blocks that stop it.
    signal.signal(signal.SIGTERM, _terminate_as_exit)
    with database(config) as dsn:
        if args.command == "serve":
            _run(_serve(config, dsn))
        elif args.command == "migrate":
            _run(_migrate(dsn))
    return 0
