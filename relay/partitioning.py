"""``fitrelay partition``: the partitioned layout of events (relay.storage.partition) from
the command line: ``status``, ``convert`` (opt in), ``detach --before YYYY-MM-DD``."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import time
from collections.abc import Callable

import asyncpg

from relay.config import Config
from relay.storage.migrate import migrate
from relay.storage.partition import convert, detach_before, is_partitioned, partitions

__all__ = ["add_partition_parser", "partition_command"]


def _date(text: str) -> int:
    """A UTC date ``YYYY-MM-DD`` as a Unix time (its midnight)."""
    try:
        day = datetime.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None
    return int(datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC).timestamp())


def add_partition_parser(
    sub: argparse.ArgumentParser, common: Callable[[argparse.ArgumentParser], None]
) -> None:
    """The arguments of ``fitrelay partition`` (``common``: the options every command has,
    given to each action too)."""
    actions = sub.add_subparsers(dest="action", required=True, metavar="ACTION")
    common(
        actions.add_parser("status", help="list the partitions of events (or say it is one table)")
    )
    common(
        actions.add_parser(
            "convert",
            help="convert events to monthly partitions (one transaction; writers wait for it)",
        )
    )
    detach = actions.add_parser(
        "detach",
        help="detach the month partitions that end on or before a date (export them first)",
    )
    common(detach)
    detach.add_argument("--before", type=_date, required=True, help="UTC date YYYY-MM-DD")


async def _partition(config: Config, dsn: str, args: argparse.Namespace) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        if args.action == "convert":
            done = await convert(conn, now=int(time.time()), ahead=config.db.partitions_ahead)
            print("events converted to monthly partitions" if done else "already partitioned")
            args.action = "status"
        if not await is_partitioned(conn):
            print("events is one table (not partitioned): see `fitrelay partition convert`")
            return 0 if args.action == "status" else 1
        if args.action == "detach":
            names = await detach_before(conn, args.before)
            print(f"detached {len(names)} partition(s): {', '.join(names) or 'none'}")
            return 0
        for part in await partitions(conn):
            print(f"{part.name}\t{part.bounds}\t~{part.rows_estimate} rows\t{part.bytes} bytes")
        return 0
    finally:
        await conn.close()


def partition_command(config: Config, dsn: str, args: argparse.Namespace) -> int:
    return asyncio.run(_partition(config, dsn, args))
