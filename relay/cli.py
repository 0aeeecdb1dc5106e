"""The ``fitrelay`` command line: parsing only; :mod:`relay.commands` does the work.

An expected failure (the database unreachable, a port in use, a missing extra) is reported
as one line on stderr with exit status 1 (:mod:`relay.diagnosis`); a configuration error
exits with 2.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from relay.commands import (
    database,
    demo_command,
    export_command,
    export_table_command,
    import_command,
    index,
    migrate_command,
    reindex_command,
    report_command,
    run,
    serve,
    serving,
    sync_command,
    terminate_as_exit,
)
from relay.config import Config, ConfigError, load
from relay.diagnosis import describe
from relay.logs import setup_logging
from relay.partitioning import add_partition_parser, partition_command
from relay.supervisor import serve_workers

__all__ = ["main"]


_DESCRIPTION = """\
A Nostr relay for fitness data, with an indexer that turns workouts, templates and
exercises into SQL tables, on PostgreSQL.

commands:
  serve         run the relay (and the indexer, unless indexer.enabled = false)
  migrate       apply the database migrations and exit
  partition     partitioned events: status, convert (opt in), detach old months
  check-config  check the configuration and exit
  import        store events from a JSON Lines file, checked as the relay checks them
  export        write the stored events to stdout as JSON Lines
  index         run the fitness indexer alone
  reindex       rebuild every fitness table from the stored events
  export-table  write one fitness table or view as CSV or Parquet
  report        write an HTML report with charts of the research views
  demo          import and index a generated, signed fitness data set to try things on
  sync          reconcile events with an upstream relay (NIP-77, else REQ pages)

Run "fitrelay COMMAND --help" for a command's options."""

_EPILOG = """\
configuration: ./config.toml in the working directory, or --config PATH (every key, its
default and a comment are in the config.toml shipped with fitrelay); environment variables
FITRELAY_DB_DSN, FITRELAY_DATA_DIR, FITRELAY_HOST, FITRELAY_PORT override the file, and
flags override both. With no DSN, an embedded PostgreSQL runs under ./var/postgres."""


def _version() -> str:
    try:
        return importlib.metadata.version("fitrelay")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "unknown"


def _logging_flags(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "--log-level",
        default=default,
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING or ERROR (default: logging.level)",
    )
    parser.add_argument(
        "--log-format", choices=["text", "json"], default=default, help="default: logging.format"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fitrelay",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fitrelay {_version()}")
    _logging_flags(parser, None)
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help=argparse.SUPPRESS
    )

    def common(sub: argparse.ArgumentParser) -> None:
        # Also after the command (fitrelay serve --log-format json); given before it, the
        # top-level value stands unless repeated here.
        _logging_flags(sub, argparse.SUPPRESS)
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
    partition = commands.add_parser(
        "partition", help="partitioned events: status, convert (opt in), detach old months"
    )
    add_partition_parser(partition, common)
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
                " readers see the old tables until it commits. A running indexer is paused"
                " between two of its batches (what the rebuild waits for is printed) and"
                " continues from the rebuilt state afterwards."
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
    table.add_argument(
        "--pseudonymize",
        action="store_true",
        help="replace pubkeys, event ids, d-tags and addresses by keyed HMAC-SHA256 pseudonyms",
    )
    table.add_argument(
        "--secret-file",
        type=Path,
        metavar="FILE",
        help="the pseudonym secret (default: $FITRELAY_PSEUDONYM_SECRET; there is no default)",
    )
    table.add_argument(
        "--coarsen-dates",
        choices=["day", "week", "month"],
        help="truncate every time and date to the start of its day, ISO week or month (UTC)",
    )
    common(commands.add_parser("check-config", help="validate the configuration and exit"))
    demo = commands.add_parser(
        "demo",
        help="import and index a generated, signed fitness data set to try the research views",
        description=(
            "Generate a reproducible data set (an exercise library, templates, weeks of"
            " strength sessions in POWR's dialect and runs in RUNSTR's, edits and deletions),"
            " import it as `fitrelay import` would and index it."
        ),
    )
    common(demo)
    demo.add_argument("--athletes", type=_positive, default=5, help="athletes (default 5)")
    demo.add_argument("--weeks", type=_positive, default=12, help="weeks of training (default 12)")
    demo.add_argument("--seed", type=int, default=1, help="keys and values follow from it")
    demo.add_argument("--output", "-o", help="write the events as JSON Lines instead of importing")
    _report_command(commands, common)
    _archive_commands(commands, common)
    _sync_command(commands, common)
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


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _report_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: Callable[[argparse.ArgumentParser], None],
) -> None:
    report = commands.add_parser(
        "report",
        help="write an HTML report of the research views (inline SVG charts)",
        description=(
            "Write one self-contained HTML page: weekly volume per muscle group, the best"
            " e1RM of the most trained canonical lifts and workouts per week over the last"
            " --weeks UTC weeks with a record, headline figures, and under each chart the SQL"
            " of the view it comes from. Reads only the fitness views (a fitrelay_reader DSN"
            " is enough). Exit status: 0 when written, 1 when the database or the output"
            " failed, 2 for a configuration error or an unknown athlete."
        ),
    )
    common(report)
    report.add_argument(
        "--output", "-o", default="report.html", help="default report.html; - for stdout"
    )
    report.add_argument(
        "--athlete",
        metavar="PUBKEY_OR_PSEUDONYM",
        help="one athlete: hex pubkey, its pseudonym (with --pseudonymize) or a unique prefix",
    )
    report.add_argument(
        "--svg-dir",
        type=Path,
        metavar="DIR",
        help="also write each chart as DIR/NAME.svg (muscle-volume, e1rm-LIFT, frequency)",
    )
    report.add_argument("--weeks", type=_positive, default=12, help="weeks shown (default 12)")
    report.add_argument(
        "--lifts", type=_positive, default=3, help="canonical lifts charted (default 3)"
    )
    report.add_argument(
        "--pseudonymize",
        action="store_true",
        help="label athletes by keyed HMAC pseudonyms, as export-table --pseudonymize does",
    )
    report.add_argument(
        "--secret-file",
        type=Path,
        metavar="FILE",
        help="the pseudonym secret (default: $FITRELAY_PSEUDONYM_SECRET)",
    )


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


def _sync_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: Callable[[argparse.ArgumentParser], None],
) -> None:
    sync = commands.add_parser(
        "sync",
        help="reconcile stored events with an upstream relay (NIP-77, else REQ paging)",
        description=(
            "Reconcile the events a filter matches here with an upstream relay: by NIP-77"
            " negentropy when it speaks it, else by REQ pages going back with until. Fetched"
            " events are checked as the relay checks an EVENT and stored; with --direction up"
            " or both, events it lacks are published to it. Each page is stored as it comes;"
            " interrupted, the same command run again continues where it stopped (a REQ"
            " sync from its checkpoint, a negentropy one by reconciling what is left). A"
            " progress bar on a terminal; prints have, need, fetched, duplicate, rejected"
            " (by reason), sent, where it resumed from and the time taken. Exit status: 0"
            " when done, 1 when the upstream or the database failed, 2 for a configuration"
            " error, 130 when interrupted."
        ),
    )
    common(sync)
    sync.add_argument("url", metavar="URL", help="the upstream relay, ws:// or wss://")
    sync.add_argument("--filter", metavar="JSON", help="a NIP-01 filter (default: everything)")
    sync.add_argument(
        "--direction", choices=("down", "up", "both"), default="down", help="default: down"
    )
    sync.add_argument(
        "--restart",
        action="store_true",
        help="ignore and clear the checkpoint an interrupted sync by REQ pages left",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = _config(args)
    except ConfigError as exc:
        print(f"fitrelay: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.logging.level, config.logging.format)
    try:
        return _dispatch(config, args)
    except Exception as exc:
        line = describe(exc)
        if line is None:
            raise
        print(f"fitrelay: {line}", file=sys.stderr)
        return 1


def _dispatch(config: Config, args: argparse.Namespace) -> int:
    if args.command == "check-config":
        print("configuration is valid")
        return 0
    # SIGTERM before the event loop runs (e.g. while the embedded database starts) must still
    # unwind through the finally blocks that stop it.
    signal.signal(signal.SIGTERM, terminate_as_exit)
    if args.command == "import":
        return import_command(config, args)
    if args.command == "export":
        return export_command(config, args)
    if args.command == "sync":
        return sync_command(config, args)
    if args.command == "reindex":
        return reindex_command(config)
    if args.command == "export-table":
        return export_table_command(config, args)
    if args.command == "demo":
        return demo_command(config, args)
    if args.command == "report":
        return report_command(config, args)
    if args.command == "serve":
        with serving(config) as free:
            if not free:
                return 1
            with database(config) as dsn:
                if config.relay.workers > 1:
                    return serve_workers(config, dsn)
                run(serve(config, dsn))
        return 0
    with database(config) as dsn:
        if args.command == "index":
            run(index(config, dsn))
        elif args.command == "migrate":
            run(migrate_command(dsn))
        elif args.command == "partition":
            return partition_command(config, dsn, args)
    return 0
