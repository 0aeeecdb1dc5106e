"""Export of stored events as JSON Lines, in log order inside one read-only snapshot.

See :mod:`relay.archive` for the whole contract.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import BinaryIO

import asyncpg
import msgspec

from relay.archive.importer import progress_bar
from relay.nostr.errors import NostrError, RelayError
from relay.nostr.event import (
    MAX_TIMESTAMP,
    decode_event,
)
from relay.nostr.filters import Filter, matches, parse_filter
from relay.nostr.limits import Limits
from relay.storage.migrate import Conn, applied_migrations, available_migrations, migrate
from relay.storage.postgres import PLANNED_PER_RUN
from relay.storage.queries import load_queries
from relay.storage.sqlfilter import compile_cutoff

__all__ = ["OutputError", "export_events", "iter_export", "parse_export_filter"]

log = logging.getLogger(__name__)

EXPORT_PAGE = 1_000
"""Rows fetched per export query."""


_lenient = msgspec.json.Decoder()


_Q = load_queries("events.sql")


async def _cutoff(conn: Conn, flt: Filter, now: int, limit: int) -> tuple[int, bytes] | None:
    """``(created_at, id)`` of the last of the ``limit`` newest matches (the REQ order), or
    None when nothing matches. Runs the relay's own query, reading back one row."""
    sql, args = compile_cutoff(flt, now, limit)  # this connection plans per run
    row = await conn.fetchrow(sql, *args)
    if row is None:
        return None
    return int(row[0]), bytes(row[1])


def _hex_list(values: frozenset[str] | None) -> list[bytes] | None:
    return None if values is None else [bytes.fromhex(v) for v in sorted(values)]


def _matches_raw(flt: Filter, raw: str) -> bool:
    try:
        return matches(flt, decode_event(raw.encode()))
    except NostrError:  # pragma: no cover - stored events always decode
        log.warning("skipping a stored event that does not decode: %.80s", raw)
        return False


async def iter_export(
    conn: Conn,
    flt: Filter | None = None,
    *,
    now: int,
    page_size: int = EXPORT_PAGE,
    on_seq: Callable[[int], None] | None = None,
) -> AsyncIterator[str]:
    """The raw JSON of the stored events matching ``flt``, in log order, ``page_size`` rows
    per query. Unexpired at ``now`` only. A filter ``limit`` selects the newest ``limit``
    matches (as a REQ would), still yielded in log order.

    Run it inside a transaction (REPEATABLE READ) for a consistent result. ``on_seq`` gets the
    log position reached after every page.
    """
    flt = flt or Filter()
    cut: tuple[int, bytes] | None = None
    if flt.limit is not None:
        if flt.limit == 0:
            return
        cut = await _cutoff(conn, flt, now, flt.limit)
        if cut is None:
            return
    kinds = None if flt.kinds is None else sorted(flt.kinds)
    args = (now, kinds, _hex_list(flt.authors), _hex_list(flt.ids), flt.since, flt.until)
    cut_args = (None, None) if cut is None else cut
    after = 0
    while True:
        rows = await conn.fetch(_Q["export_page"], after, *args, *cut_args, page_size)
        if not rows:
            return
        after = int(rows[-1][0])
        for row in rows:
            raw: str = row[1]
            if flt.tags and not _matches_raw(flt, raw):
                continue
            yield raw
        if on_seq is not None:
            on_seq(after)
        if len(rows) < page_size:
            return


async def _bring_schema_up(conn: Conn) -> None:
    """Apply migrations only when some are pending: a schema already up to date is only read,
    so a read-only role (``fitrelay_reader``) can export."""
    done = set(await applied_migrations(conn))
    if any(name not in done for name, _ in available_migrations()):
        await migrate(conn)


class OutputError(RelayError):
    """Writing the export failed; ``error`` says why (BrokenPipeError: the reader left)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def parse_export_filter(text: str | bytes, limits: Limits) -> Filter:
    """One NIP-01 filter given as JSON, checked against ``limits`` except ``max_limit``: an
    export's ``limit`` is honoured however large.

    Raises:
        NostrError: ``invalid:`` or ``unsupported:``, as a REQ would get.
    """
    try:
        raw = _lenient.decode(text)
    except (msgspec.DecodeError, RecursionError):
        raise NostrError("invalid", "the filter is not valid JSON") from None
    return parse_filter(raw, msgspec.structs.replace(limits, max_limit=MAX_TIMESTAMP))


def _one_line(raw: str) -> bytes:
    """The event on one line. JSON strings cannot hold a raw line break, so any in ``raw`` is
    whitespace between tokens: a space keeps the JSON, and its length, the same."""
    if "\n" in raw or "\r" in raw:
        raw = raw.replace("\n", " ").replace("\r", " ")
    return raw.encode() + b"\n"


async def export_events(
    dsn: str,
    out: BinaryIO,
    flt: Filter | None = None,
    *,
    now: int | None = None,
    page_size: int = EXPORT_PAGE,
    progress: bool = False,
) -> int:
    """Write the stored events matching ``flt`` to ``out``, one JSON object per line, in log
    order, from one snapshot; returns how many. ``now`` (default: the current time) decides
    which events have expired. ``progress`` shows a bar of the log scanned on stderr.
    """
    if now is None:
        now = int(time.time())
    conn = await asyncpg.connect(
        dsn,
        server_settings={**PLANNED_PER_RUN, "application_name": "fitrelay export"},
    )
    written = 0
    try:
        await _bring_schema_up(conn)
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            head = int(await conn.fetchval(_Q["head_seq"]))
            with progress_bar(progress, total=head, unit=" seq", desc="export") as bar:

                def advance(seq: int) -> None:
                    bar.update(seq - bar.n)
                    bar.set_postfix(events=written, refresh=False)

                async for raw in iter_export(
                    conn, flt, now=now, page_size=page_size, on_seq=advance
                ):
                    try:
                        out.write(_one_line(raw))
                    except OSError as exc:
                        raise OutputError(exc) from exc
                    written += 1
                bar.update(head - bar.n)
        try:
            out.flush()
        except OSError as exc:
            raise OutputError(exc) from exc
    finally:
        await conn.close()
    return written
