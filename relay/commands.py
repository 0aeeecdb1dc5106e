"""What each ``fitrelay`` command does, once the command line is parsed (:mod:`relay.cli`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import signal
import sys
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import asyncpg
import msgspec

from relay import archive
from relay.app import IndexProcess, Relay, indexing_from, rules_from
from relay.archive import upstream
from relay.archive.syncbar import SyncBar
from relay.config import Config
from relay.diagnosis import describe
from relay.logs import redact_dsn
from relay.nostr.errors import NostrError
from relay.stages import StageFailed
from relay.storage.failures import DATABASE_ERRORS
from relay.storage.lease import FileLock
from relay.storage.migrate import migrate
from relay.storage.postgres import Store, create_pool

__all__ = [
    "database",
    "demo_command",
    "export_command",
    "export_table_command",
    "import_command",
    "index",
    "migrate_command",
    "reindex_command",
    "report_command",
    "run",
    "serve",
    "serving",
    "sync_command",
    "terminate_as_exit",
]

if TYPE_CHECKING:
    from indexer.pseudonym import Pseudonymizer

log = logging.getLogger("relay")


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


@contextlib.contextmanager
def serving(config: Config) -> Iterator[bool]:
    """Hold the data directory and port for this relay while it runs; yield False, having
    said so, when a relay already holds them (then nothing else may be touched).

    Only relays on the embedded database are told apart this way; port 0 is never shared.
    """
    port = config.relay.port
    if config.db.dsn or port == 0:
        yield True
        return
    config.data_path.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = FileLock(config.data_path / f"serve-{port}.lock")
    if not lock.acquire(wait=False):
        pid = lock.holder_pid()
        print(
            f"fitrelay: a relay is already running on port {port} with data directory"
            f" {config.data_path}" + (f" (pid {pid})" if pid else ""),
            file=sys.stderr,
        )
        yield False
        return
    try:
        lock.record_pid()
        yield True
    finally:
        lock.release()


_T = TypeVar("_T")


def terminate_as_exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` on uvloop (plain asyncio where uvloop is missing) and return its result."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return asyncio.run(coro)
    return uvloop.run(coro)


async def until_signalled(process: Relay | IndexProcess, *, freeze: bool = False) -> None:
    """Start ``process``, run until SIGINT or SIGTERM, then stop it. A stage that stops on
    its own stops the process too (:class:`~relay.stages.StageFailed`), so a supervisor
    restarts it whole rather than leave it serving without, say, its indexer."""
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
    stages = process.stages
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(stages.failed.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        log.info("stopping")
    finally:
        for waiting in waits:
            waiting.cancel()
        try:
            await process.stop()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
    if stages.failed.is_set():
        raise StageFailed(stages.failure)


async def serve(config: Config, dsn: str) -> None:
    await until_signalled(Relay(config, dsn), freeze=True)


async def index(config: Config, dsn: str) -> None:
    await until_signalled(IndexProcess(config, dsn))


def reindex_command(config: Config) -> int:
    from indexer.follower import reindex

    try:
        with database(config) as dsn:
            report = run(reindex(dsn, progress=sys.stderr.isatty(), say=_say))
    except DATABASE_ERRORS as exc:
        return _failed("database error", exc)
    print(
        f"reindexed {report.events} log entries up to position {report.head}"
        f" in {report.seconds:.1f} s",
        flush=True,
    )
    return 0


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def export_table_command(config: Config, args: argparse.Namespace) -> int:
    from indexer.export import export_table
    from indexer.pseudonym import Pseudonymizer, load_secret

    if args.format == "parquet" and not args.output:
        print("fitrelay: --format parquet needs --output FILE", file=sys.stderr)
        return 2
    pseudonymizer = None
    if args.pseudonymize:
        try:
            configured = config.export.pseudonym_secret_file
            secret = load_secret(
                args.secret_file, configured=Path(configured) if configured else None
            )
            pseudonymizer = Pseudonymizer(secret)
        except (ValueError, OSError) as exc:
            print(f"fitrelay: configuration error: {exc}", file=sys.stderr)
            return 2
    elif args.secret_file is not None:
        print("fitrelay: --secret-file is only used with --pseudonymize", file=sys.stderr)
        return 2
    target: Path | BinaryIO = Path(args.output) if args.output else sys.stdout.buffer
    try:
        with database(config) as dsn:
            rows = run(
                export_table(
                    dsn,
                    args.name,
                    args.format,
                    target,
                    pseudonymizer=pseudonymizer,
                    coarsen_dates=args.coarsen_dates,
                )
            )
    except ValueError as exc:
        print(f"fitrelay: {exc}", file=sys.stderr)
        return 2
    except DATABASE_ERRORS as exc:
        return _failed("export failed", exc)
    print(f"exported {rows} row{'s' if rows != 1 else ''}", file=sys.stderr)
    return 0


def _pseudonymizer(config: Config, args: argparse.Namespace) -> Pseudonymizer | None:
    """The Pseudonymizer ``--pseudonymize`` asks for (None without it); ValueError or
    OSError when the secret is missing or unreadable."""
    from indexer.pseudonym import Pseudonymizer, load_secret

    if not args.pseudonymize:
        if args.secret_file is not None:
            raise ValueError("--secret-file is only used with --pseudonymize")
        return None
    configured = config.export.pseudonym_secret_file
    secret = load_secret(args.secret_file, configured=Path(configured) if configured else None)
    return Pseudonymizer(secret)


def report_command(config: Config, args: argparse.Namespace) -> int:
    """``fitrelay report``: write the HTML report of the research views."""
    from indexer.report import figures, write_report

    try:
        pseudonymizer = _pseudonymizer(config, args)
    except (ValueError, OSError) as exc:
        print(f"fitrelay: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        with database(config) as dsn:
            page, report = run(
                write_report(
                    dsn,
                    weeks=args.weeks,
                    athlete=args.athlete,
                    lifts=args.lifts,
                    pseudonymizer=pseudonymizer,
                )
            )
    except ValueError as exc:
        print(f"fitrelay: {exc}", file=sys.stderr)
        return 2
    except DATABASE_ERRORS as exc:
        return _failed("report failed", exc)
    try:
        if args.output == "-":
            sys.stdout.write(page)
            sys.stdout.flush()
        else:
            Path(args.output).write_text(page, encoding="utf-8")
        if args.svg_dir is not None:
            args.svg_dir.mkdir(parents=True, exist_ok=True)
            for figure in figures(report):
                (args.svg_dir / f"{figure.name}.svg").write_text(figure.svg + "\n", "utf-8")
    except OSError as exc:
        return _failed("cannot write the report", exc)
    h = report.headline
    print(
        f"wrote {args.output}: {len(report.weeks)} weeks, {h.athletes} athletes,"
        f" {h.workouts} workouts, {h.working_sets} working sets, {len(report.lifts)} lifts",
        file=sys.stderr,
    )
    return 0


async def migrate_command(dsn: str, *, quiet: bool = False) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        applied = await migrate(conn)
    finally:
        await conn.close()
    if not quiet:
        print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none needed'}")


# -- import / export ------------------------------------------------------------------------


def _failed(what: str, exc: BaseException) -> int:
    print(f"fitrelay: {describe(exc) or f'{what}: {exc}'}", file=sys.stderr)
    return 1


def import_command(config: Config, args: argparse.Namespace) -> int:
    name: str = args.file
    try:
        source: BinaryIO = sys.stdin.buffer if name == "-" else open(name, "rb")
    except OSError as exc:
        print(f"fitrelay: cannot read {name}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    batch: int = args.batch or config.relay.max_batch
    try:
        with database(config) as dsn:
            report = run(
                archive.import_events(
                    dsn,
                    source,
                    limits=config.relay.limits,
                    batch_size=batch,
                    progress=sys.stderr.isatty(),
                    indexing=indexing_from(config),
                )
            )
    except DATABASE_ERRORS as exc:
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


def export_command(config: Config, args: argparse.Namespace) -> int:
    flt = None
    if args.filter is not None:
        try:
            flt = archive.parse_export_filter(args.filter, config.relay.limits)
        except NostrError as exc:
            print(f"fitrelay: configuration error: --filter: {exc.message}", file=sys.stderr)
            return 2
    try:
        with database(config) as dsn:
            written = run(
                archive.export_events(dsn, sys.stdout.buffer, flt, progress=sys.stderr.isatty())
            )
    except archive.OutputError as exc:
        if isinstance(exc.error, BrokenPipeError):
            # The reader went away (e.g. "| head"): stop quietly, like other filters do.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        return _failed("cannot write the output", exc.error)
    except DATABASE_ERRORS as exc:
        return _failed("database error", exc)
    except KeyboardInterrupt:
        print("fitrelay: interrupted", file=sys.stderr)
        return 130
    print(f"exported {written} event{'s' if written != 1 else ''}", file=sys.stderr)
    return 0


def demo_command(config: Config, args: argparse.Namespace) -> int:
    """Generate the demo data set; write it to ``--output``, or import and index it."""
    import io

    from relay.archive.demo import generate

    try:
        events = generate(athletes=args.athletes, weeks=args.weeks, seed=args.seed)
    except ValueError as exc:
        print(f"fitrelay: {exc}", file=sys.stderr)
        return 2
    lines = b"".join(_json_line(e) for e in events)
    if args.output:
        try:
            Path(args.output).write_bytes(lines)
        except OSError as exc:
            return _failed(f"cannot write {args.output}", exc)
        print(f"wrote {len(events)} events to {args.output}", file=sys.stderr)
        return 0
    from indexer.follower import reindex

    try:
        with database(config) as dsn:
            report = run(
                archive.import_events(
                    dsn,
                    io.BytesIO(lines),
                    limits=config.relay.limits,
                    batch_size=1000,
                    indexing=indexing_from(config),
                )
            )
            indexed = run(reindex(dsn))
    except DATABASE_ERRORS as exc:
        return _failed("database error", exc)
    print(report.format(f"demo (seed {args.seed})"), flush=True)
    print(f"indexed {indexed.events} log entries; try: fitrelay export-table personal_records")
    return 0


def _json_line(event: dict[str, Any]) -> bytes:
    import msgspec

    return msgspec.json.encode(event) + b"\n"


_AGAIN = (
    "what was stored so far stays, and the same command run again continues"
    " (--restart to start over)"
)


def sync_command(config: Config, args: argparse.Namespace) -> int:
    """``fitrelay sync URL``: reconcile with an upstream relay, print the summary."""
    text: str = args.filter or "{}"
    try:
        flt = archive.parse_export_filter(text, config.relay.limits)
    except NostrError as exc:
        print(f"fitrelay: configuration error: --filter: {exc.message}", file=sys.stderr)
        return 2
    raw_filter = msgspec.json.decode(text)

    async def sync(dsn: str) -> upstream.SyncReport:
        pool = await create_pool(dsn, min_size=1, max_size=2, statement_timeout_ms=0)
        try:
            async with pool.acquire() as conn:
                await migrate(conn)
            store = Store(
                pool,
                default_limit=config.relay.limits.default_limit,
                indexing=indexing_from(config),
            )
            return await upstream.sync_upstream(
                store,
                args.url,
                flt,
                raw_filter,
                args.direction,
                config.relay.limits,
                restart=args.restart,
                progress=SyncBar(sys.stderr.isatty()),
                # [policy] as for a published event, AUTH aside: no connection to authenticate.
                rules=dataclasses.replace(
                    rules_from(config), auth_writes=False, auth_kinds=frozenset()
                ),
            )
        finally:
            await pool.close()

    try:
        with database(config) as dsn:
            report = run(sync(dsn))
    except upstream.UpstreamError as exc:
        print(f"fitrelay: upstream {args.url}: {exc}; {_AGAIN}", file=sys.stderr)
        return 1
    except DATABASE_ERRORS as exc:
        return _failed("sync failed", exc)
    except KeyboardInterrupt:
        print(f"fitrelay: interrupted; {_AGAIN}", file=sys.stderr)
        return 130
    print(report.format(args.url), flush=True)
    return 0
