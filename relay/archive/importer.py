"""Import of events from JSON Lines: each line checked exactly as the relay checks an
``EVENT``, the accepted ones stored through the writer's own ingest in file order.

See :mod:`relay.archive` for the whole contract.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal, NoReturn, TypeAlias

import msgspec
from tqdm import tqdm

from relay.nostr.errors import NostrError
from relay.nostr.event import (
    Event,
    KindClass,
    kind_class,
)
from relay.nostr.limits import Limits
from relay.nostr.session import check_event, claimed_id
from relay.storage.indexing import FITNESS_INDEXING, Indexing, prepare
from relay.storage.migrate import migrate
from relay.storage.postgres import IngestStatus, Store, create_pool

__all__ = [
    "EPHEMERAL_REASON",
    "Checked",
    "ImportReport",
    "LineOutcome",
    "Reason",
    "Rejection",
    "Result",
    "check_line",
    "import_events",
    "import_stream",
    "progress_bar",
]

log = logging.getLogger(__name__)

EPHEMERAL_REASON = "ephemeral: not stored"
SAMPLE_LINES = 5
"""Line numbers the report shows per reason."""

_WHITESPACE = b" \t\r\n"
_BOM = b"\xef\xbb\xbf"
_EVENT_FRAME_OVERHEAD = len(b'["EVENT",]')
"""Bytes ``["EVENT",<event>]`` adds to the event: the size the relay would have received."""
_LINE_SLACK = 65_536
"""Room above ``max_message_bytes`` for whitespace and a subscription id before a line is
dropped unread as too large."""
_DRAIN_CHUNK = 65_536
_YIELD_EVERY = 64
"""Lines checked between two passes through the event loop (lets a batch commit meanwhile)."""
_QUEUED_BATCHES = 2

_frame = msgspec.json.Decoder(list[msgspec.Raw])
_string = msgspec.json.Decoder(str)


# -- checking one line ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checked:
    """An event the relay would store, with its JSON exactly as it appears in the line."""

    event: Event
    raw: str


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a line is not stored: the relay's OK/NOTICE message, or ``malformed line: ...``."""

    reason: str
    event_id: str | None = None


def _event_json(line: bytes) -> bytes | Rejection:
    """The event object in a line: the line itself, or the event of an EVENT message."""
    if line[:1] == b"{":
        return line
    if line[:1] != b"[":
        return Rejection("malformed line: not a JSON object or an EVENT message")
    try:
        parts = _frame.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return Rejection("malformed line: not valid JSON")
    try:
        verb = _string.decode(parts[0]) if parts else ""
        if verb != "EVENT":
            return Rejection("malformed line: not an EVENT message")
        if len(parts) == 3:
            _string.decode(parts[1])  # the subscription id of a relay's EVENT message
        elif len(parts) != 2:
            raise msgspec.ValidationError
    except (msgspec.DecodeError, msgspec.ValidationError):
        return Rejection(
            'malformed line: an EVENT message is ["EVENT", <event>]'
            ' or ["EVENT", <subscription id>, <event>]'
        )
    return bytes(parts[-1])


def check_line(line: bytes, limits: Limits, now: int) -> Checked | Rejection:
    """Apply the relay's EVENT rules to one line received at unix time ``now``.

    The line (surrounding whitespace allowed) holds an event object, or a message
    ``["EVENT", <event>]`` or ``["EVENT", <subscription id>, <event>]``. The checks and their
    messages are those of :meth:`relay.nostr.session.Session.receive` for the frame
    ``["EVENT",<event>]``; an ephemeral event is rejected with :data:`EPHEMERAL_REASON`.
    """
    line = line.strip(_WHITESPACE)
    try:
        line.decode()
    except UnicodeDecodeError:
        return Rejection("malformed line: not valid UTF-8")
    found = _event_json(line)
    if isinstance(found, Rejection):
        return found
    raw = found
    if len(raw) + _EVENT_FRAME_OVERHEAD > limits.max_message_bytes:
        reason = f"invalid: message is larger than {limits.max_message_bytes} bytes"
        return Rejection(reason, claimed_id(raw))
    try:
        event = check_event(raw, limits, now)
    except NostrError as exc:
        return Rejection(exc.message, claimed_id(raw))
    if kind_class(event.kind) is KindClass.EPHEMERAL:
        return Rejection(EPHEMERAL_REASON, event.id)
    return Checked(event, raw.decode())


# -- the import report ----------------------------------------------------------------------


Result: TypeAlias = Literal["accepted", "duplicate", "rejected"]
ACCEPTED: Result = "accepted"
DUPLICATE: Result = "duplicate"
REJECTED: Result = "rejected"


@dataclass(frozen=True, slots=True)
class LineOutcome:
    """What became of one non-blank line.

    ``result`` is ``"accepted"`` (stored), ``"duplicate"`` (already stored) or ``"rejected"``;
    ``reason`` is the relay's message (empty when accepted).
    """

    line: int
    event_id: str | None
    result: Result
    reason: str


@dataclass(slots=True)
class Reason:
    """How often one rejection reason occurred, and on which lines first."""

    count: int = 0
    lines: list[int] = field(default_factory=list)


@dataclass(slots=True)
class ImportReport:
    lines: int = 0
    """Non-blank lines read: ``accepted + duplicate + rejected``."""
    blank: int = 0
    accepted: int = 0
    duplicate: int = 0
    reasons: dict[str, Reason] = field(default_factory=dict)
    read_error: str | None = None
    """Why reading stopped before the end of the input, if it did."""

    @property
    def rejected(self) -> int:
        return sum(reason.count for reason in self.reasons.values())

    def add(self, outcome: LineOutcome) -> None:
        if outcome.result == ACCEPTED:
            self.accepted += 1
        elif outcome.result == DUPLICATE:
            self.duplicate += 1
        else:
            entry = self.reasons.setdefault(outcome.reason, Reason())
            entry.count += 1
            if len(entry.lines) < SAMPLE_LINES:
                entry.lines.append(outcome.line)

    def format(self, name: str) -> str:
        """The report as printed by ``fitrelay import``."""
        head = f"{name}: {self.lines} line{'s' if self.lines != 1 else ''}"
        if self.blank:
            head += f" ({self.blank} blank skipped)"
        out = [
            head,
            f"accepted: {self.accepted}",
            f"duplicate: {self.duplicate}",
            f"rejected: {self.rejected}",
        ]
        for reason, entry in sorted(self.reasons.items(), key=lambda kv: (-kv[1].count, kv[0])):
            where = ", ".join(map(str, entry.lines))
            if entry.count > len(entry.lines):
                where += ", ..."
            plural = "s" if entry.count > 1 else ""
            out.append(f"  {reason}: {entry.count} (line{plural} {where})")
        return "\n".join(out)


# -- import -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Pending:
    line: int
    checked: Checked


def _read_lines(
    source: BinaryIO, max_line: int, report: ImportReport
) -> Iterator[tuple[bytes | None, int]]:
    """``(line, bytes consumed)`` for each line; the line is None when longer than
    ``max_line``, and is then skipped without ever being held whole. A read error ends the
    lines and is recorded in ``report.read_error``."""
    try:
        while True:
            line = source.readline(max_line + 1)
            if not line:
                return
            size = len(line)
            if size > max_line and not line.endswith(b"\n"):
                while not line.endswith(b"\n"):
                    line = source.readline(_DRAIN_CHUNK)
                    if not line:
                        break
                    size += len(line)
                yield None, size
            else:
                yield line, size
    except OSError as exc:
        report.read_error = exc.strerror or str(exc)


def _outcome(line: int, checked: Checked, status: IngestStatus) -> LineOutcome:
    accepted, message = status.reply
    if status is IngestStatus.STORED:
        return LineOutcome(line, checked.event.id, ACCEPTED, message)
    if accepted:
        return LineOutcome(line, checked.event.id, DUPLICATE, message)
    return LineOutcome(line, checked.event.id, REJECTED, message)


async def import_stream(
    store: Store,
    source: BinaryIO,
    *,
    limits: Limits,
    batch_size: int,
    clock: Callable[[], float] = time.time,
    on_outcome: Callable[[LineOutcome], None] | None = None,
    on_bytes: Callable[[int], object] | None = None,
) -> ImportReport:
    """Check every line of ``source`` and store the accepted events, ``batch_size`` a time.

    Lines are checked while the previous batch commits; batches are stored one after the other
    in file order. ``on_outcome`` sees every non-blank line's outcome (a rejection as soon as the
    line is checked, the others when their batch commits); ``on_bytes`` the bytes read.

    Raises:
        asyncpg.PostgresError, OSError: the database failed; batches committed before stay.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    report = ImportReport()
    batches: asyncio.Queue[list[_Pending] | None] = asyncio.Queue(_QUEUED_BATCHES)

    def record(outcome: LineOutcome) -> None:
        report.add(outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    async def store_batches() -> None:
        while (batch := await batches.get()) is not None:
            statuses = await store.ingest(
                [item.checked.event for item in batch], [item.checked.raw for item in batch]
            )
            for item, status in zip(batch, statuses, strict=True):
                record(_outcome(item.line, item.checked, status))

    async def check_lines() -> None:
        pending: list[_Pending] = []
        unreported = 0
        max_line = limits.max_message_bytes + _LINE_SLACK
        for number, (line, size) in enumerate(_read_lines(source, max_line, report), start=1):
            unreported += size
            if line is None:
                report.lines += 1
                reason = f"invalid: message is larger than {limits.max_message_bytes} bytes"
                record(LineOutcome(number, None, REJECTED, reason))
                continue
            if number == 1 and line.startswith(_BOM):
                line = line[len(_BOM) :]
            if not line.strip(_WHITESPACE):
                report.blank += 1
                continue
            report.lines += 1
            checked = check_line(line, limits, int(clock()))
            if isinstance(checked, Rejection):
                record(LineOutcome(number, checked.event_id, REJECTED, checked.reason))
            else:
                pending.append(_Pending(number, checked))
            if len(pending) >= batch_size or number % _YIELD_EVERY == 0:
                if on_bytes is not None:
                    on_bytes(unreported)
                    unreported = 0
                if len(pending) >= batch_size:
                    await batches.put(pending)
                    pending = []
                else:
                    await asyncio.sleep(0)
        if pending:
            await batches.put(pending)
        await batches.put(None)
        if on_bytes is not None and unreported:
            on_bytes(unreported)

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(store_batches())
            group.create_task(check_lines())
    except BaseExceptionGroup as group_error:
        _reraise_first(group_error)
    return report


def _reraise_first(group_error: BaseExceptionGroup[BaseException]) -> NoReturn:
    first = group_error.exceptions[0]
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    raise first from None


def _file_size(source: BinaryIO) -> int | None:
    try:
        info = os.fstat(source.fileno())
    except (OSError, ValueError, AttributeError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def progress_bar(enabled: bool, **kwargs: Any) -> tqdm[NoReturn]:
    return tqdm(disable=not enabled, file=sys.stderr, dynamic_ncols=True, **kwargs)


async def import_events(
    dsn: str,
    source: BinaryIO,
    *,
    limits: Limits,
    batch_size: int = 1_000,
    progress: bool = False,
    clock: Callable[[], float] = time.time,
    indexing: Indexing = FITNESS_INDEXING,
    on_outcome: Callable[[LineOutcome], None] | None = None,
) -> ImportReport:
    """Migrate the database at ``dsn``, then :func:`import_stream` ``source`` into it.

    ``progress`` shows a bar of the bytes read on stderr; ``indexing`` is what the events
    are indexed for besides themselves (``[relay.tags]``, ``[relay.search]``).
    """
    pool = await create_pool(dsn, min_size=1, max_size=1, statement_timeout_ms=0)
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
            # The stored events indexed for what this import indexes (at once on a new
            # database), so the relay's next start has nothing left to do.
            await prepare(conn, indexing)
        store = Store(pool, default_limit=limits.default_limit, indexing=indexing)
        bar = progress_bar(
            progress,
            total=_file_size(source),
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc="import",
        )
        with bar:
            return await import_stream(
                store,
                source,
                limits=limits,
                batch_size=batch_size,
                clock=clock,
                on_outcome=on_outcome,
                on_bytes=bar.update,
            )
    finally:
        await pool.close()


# -- export -----------------------------------------------------------------------------------
