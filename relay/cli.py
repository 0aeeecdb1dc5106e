"""The ``fitrelay`` command line. Parsing and wiring only; the work lives in the packages."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import asyncpg
import msgspec

from relay import archive
from relay.app import IndexProcess, Relay
from relay.config import Config, ConfigError, load, parse_listen
from relay.logs import redact_dsn, setup_logging
from relay.nostr.errors import NostrError
from relay.storage.migrate import migrate

__all__ = ["main"]

log = logging.getLogger("relay")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fitrelay", description=__doc__)
    parser.add_argument(
        "--log-level", help="DEBUG, INFO, WARNING or ERROR (default: logging.level)"
    )
    parser.add_argument("--log-format", choices=["text", "json"], help="default: logging.format")
    commands = parser.add_subparsers(dest="command", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--config", type=Path, help="TOML file (default ./config.toml if any)")
        sub.add_argument("--db-dsn", help="PostgreSQL DSN; none runs an embedded PostgreSQL")
        sub.add_argument("--data-dir", help="where the embedded PostgreSQL keeps its data")

    serve = commands.add_parser("serve", help="run the relay")
    common(serve)
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default 7447)")
    serve.add_argument(
        "--workers",
        type=_positive,
        help="relay processes sharing the port (default relay.workers, 1)",
    )
    common(commands.add_parser("migrate", help="apply database migrations and exit"))
    common(
        commands.add_parser(
            "index",
            help="run the fitness indexer alone (serve runs it too unless indexer.enabled=false)",
        )
    )
    common(
        commands.add_parser(
            "reindex",
            help="rebuild every fitness table from the stored events and exit",
            description=(
                "Rebuild the fitness tables from the stored events in one transaction;"
                " readers see the old tables until it commits. A running indexer is waited"
                " for and continues from the rebuilt state afterwards."
            ),
        )
    )
    table = commands.add_parser(
        "export-table",
        help="write one fitness table or view as CSV or Parquet",
        description="Write a table or view of schema fitness (docs/schema.md) for analysis.",
    )
    common(table)
    table.add_argument("name", help="table or view name, e.g. workout_sets")
    table.add_argument("--format", choices=["csv", "parquet"], default="csv")
    table.add_argument("--output", "-o", help="file to write (default: stdout; csv only)")
    common(commands.add_parser("check-config", help="validate the configuration and exit"))
    _archive_commands(commands, common)
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
            ("relay", "workers"): getattr(args, "workers", None),
            ("logging", "level"): args.log_level,
            ("logging", "format"): args.log_format,
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


_T = TypeVar("_T")


def _terminate_as_exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _run(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` on uvloop (plain asyncio where uvloop is missing) and return its result."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return asyncio.run(coro)
    return uvloop.run(coro)


async def _until_signalled(process: Relay | IndexProcess, *, freeze: bool = False) -> None:
    """Start ``process``, run until SIGINT or SIGTERM (or a stage fails), then stop it."""
    log.info("database %s", redact_dsn(process.dsn))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await process.start()
    if freeze:
        # What start-up allocated (modules, classes, the relay's own structures) lives as
        # long as the process: out of the collector's sight, a full collection walks only
        # what came after, and its pauses stop growing with the size of the code base.
        gc.collect()
        gc.freeze()
    try:
        await stop.wait()
        log.info("stopping")
    finally:
        await process.stop()


async def _serve(config: Config, dsn: str) -> None:
    await _until_signalled(Relay(config, dsn), freeze=True)


def _worker_config(config: Config, number: int) -> Config:
    """Worker ``number``'s configuration: metrics on the configured port plus its number
    (each worker is scraped on its own), and the indexer started by every worker but
    running in one at a time (the others wait on its lock, ready to take over)."""
    metrics = config.metrics
    if metrics.listen:
        host, port = parse_listen(metrics.listen)
        host = f"[{host}]" if ":" in host else host
        listen = f"{host}:{port + number if port else 0}"
        metrics = msgspec.structs.replace(metrics, listen=listen)
    return msgspec.structs.replace(config, metrics=metrics)


def _worker_main(config: Config, dsn: str, number: int) -> None:
    setup_logging(config.logging.level, config.logging.format)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into SIGTERM
    log.info("worker %d: pid %d", number, os.getpid())
    _run(_serve(_worker_config(config, number), dsn))


def _serve_workers(config: Config, dsn: str) -> None:
    """Run ``relay.workers`` relay processes on one port; stop them all on SIGINT/SIGTERM."""
    _run(_migrate(dsn, quiet=True))  # once, before the workers race for it
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_worker_main, args=(config, dsn, n), name=f"fitrelay-{n}")
        for n in range(config.relay.workers)
    ]
    for worker in workers:
        worker.start()
    stopping = False

    def stop(*_args: object) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.is_alive() and worker.pid is not None:
                os.kill(worker.pid, signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        # A worker that dies on its own takes the others down: a half relay is worse.
        while not stopping and all(worker.is_alive() for worker in workers):
            multiprocessing.connection.wait([w.sentinel for w in workers])
        stop()
        for worker in workers:
            worker.join()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


async def _index(config: Config, dsn: str) -> None:
    await _until_signalled(IndexProcess(config, dsn))


def _reindex_command(config: Config) -> int:
    from indexer.follower import reindex

    try:
        with database(config) as dsn:
            report = _run(reindex(dsn, progress=sys.stderr.isatty()))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return _failed("database error", exc)
    print(
        f"reindexed {report.events} log entries up to position {report.head}"
        f" in {report.seconds:.1f} s",
        flush=True,
    )
    return 0


def _export_table_command(config: Config, args: argparse.Namespace) -> int:
    from indexer.export import export_table

    if args.format == "parquet" and not args.output:
        print("fitrelay: --format parquet needs --output FILE", file=sys.stderr)
        return 2
    target: Path | BinaryIO = Path(args.output) if args.output else sys.stdout.buffer
    try:
        with database(config) as dsn:
            rows = _run(export_table(dsn, args.name, args.format, target))
    except ValueError as exc:
        print(f"fitrelay: {exc}", file=sys.stderr)
        return 2
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return _failed("export failed", exc)
    print(f"exported {rows} row{'s' if rows != 1 else ''}", file=sys.stderr)
    return 0


async def _migrate(dsn: str, *, quiet: bool = False) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        applied = await migrate(conn)
    finally:
        await conn.close()
    if not quiet:
        print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none needed'}")


# -- import / export ------------------------------------------------------------------------


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _archive_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: Callable[[argparse.ArgumentParser], None],
) -> None:
    imp = commands.add_parser(
        "import",
        help="store events from a JSON Lines file, checked as the relay checks an EVENT",
        description=(
            'Read one event per line (an event object, or ["EVENT", <event>] or'
            ' ["EVENT", <subscription id>, <event>]; blank lines are skipped), check each'
            " exactly as the relay checks an EVENT, and store the accepted ones in file order."
            " Prints how many were accepted, duplicate and rejected, and why. Exit status: 0"
            " when the file was processed, 1 when it (or the database) failed, 2 for a"
            " configuration error."
        ),
    )
    common(imp)
    imp.add_argument("file", metavar="FILE.jsonl", help="the file to import; - reads stdin")
    imp.add_argument(
        "--batch",
        type=_positive,
        metavar="N",
        help="events stored per transaction (default: relay.max_batch)",
    )
    exp = commands.add_parser(
        "export",
        help="write stored events to stdout as JSON Lines, oldest first",
        description=(
            "Write the stored events, their JSON exactly as stored, one per line, in the order"
            " they were stored. Expired events (NIP-40) are left out. Exit status: 0 when done,"
            " 1 when the database or the output failed, 2 for a configuration error."
        ),
    )
    common(exp)
    exp.add_argument(
        "--filter",
        metavar="JSON",
        help="a NIP-01 filter, e.g. '{\"kinds\":[33401]}'; its limit keeps the newest matches",
    )


def _failed(what: str, exc: BaseException) -> int:
    print(f"fitrelay: {what}: {exc}", file=sys.stderr)
    return 1


def _import_command(config: Config, args: argparse.Namespace) -> int:
    name: str = args.file
    try:
        source: BinaryIO = sys.stdin.buffer if name == "-" else open(name, "rb")
    except OSError as exc:
        print(f"fitrelay: cannot read {name}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    batch: int = args.batch or config.relay.max_batch
    try:
        with database(config) as dsn:
            report = _run(
                archive.import_events(
                    dsn,
                    source,
                    limits=config.relay.limits,
                    batch_size=batch,
                    progress=sys.stderr.isatty(),
                )
            )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return _failed("database error", exc)
    except KeyboardInterrupt:
        print("fitrelay: interrupted; the batches committed so far stay", file=sys.stderr)
        return 130
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    print(report.format("stdin" if name == "-" else name), flush=True)
    if report.read_error is not None:
        print(f"fitrelay: cannot read {name}: {report.read_error}", file=sys.stderr)
        return 1
    return 0


def _export_command(config: Config, args: argparse.Namespace) -> int:
    flt = None
    if args.filter is not None:
        try:
            flt = archive.parse_export_filter(args.filter, config.relay.limits)
        except NostrError as exc:
            print(f"fitrelay: configuration error: --filter: {exc.message}", file=sys.stderr)
            return 2
    try:
        with database(config) as dsn:
            written = _run(
                archive.export_events(dsn, sys.stdout.buffer, flt, progress=sys.stderr.isatty())
            )
    except archive.OutputError as exc:
        if isinstance(exc.error, BrokenPipeError):
            # The reader went away (e.g. "| head"): stop quietly, like other filters do.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        return _failed("cannot write the output", exc.error)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return _failed("database error", exc)
    except KeyboardInterrupt:
        print("fitrelay: interrupted", file=sys.stderr)
        return 130
    print(f"exported {written} event{'s' if written != 1 else ''}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = _config(args)
    except ConfigError as exc:
        print(f"fitrelay: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.logging.level, config.logging.format)
    if args.command == "check-config":
        print("configuration is valid")
        return 0
    # SIGTERM before the event loop runs (e.g. while the embedded database starts) must still
    # unwind through the finally blocks that stop it.
    signal.signal(signal.SIGTERM, _terminate_as_exit)
    if args.command == "import":
        return _import_command(config, args)
    if args.command == "export":
        return _export_command(config, args)
    if args.command == "reindex":
        return _reindex_command(config)
    if args.command == "export-table":
        return _export_table_command(config, args)
    with database(config) as dsn:
        if args.command == "serve" and config.relay.workers > 1:
            _serve_workers(config, dsn)
        elif args.command == "serve":
            _run(_serve(config, dsn))
        elif args.command == "index":
            _run(_index(config, dsn))
        elif args.command == "migrate":
            _run(_migrate(dsn))
    return 0
