"""``fitrelay sync``: reconcile the stored events of a filter with an upstream relay.

With an upstream that speaks NIP-77 the two sets are reconciled by negentropy
(:mod:`relay.nostr.negentropy`, this side the initiator), then the events only upstream has
are fetched by id and the ones only stored here are published to it. An upstream that answers
NEG-OPEN with a NOTICE or NEG-ERR is read instead by REQ, page after page going back with
``until`` (and is sent every local match when uploading). Fetched events go through the
checks of :func:`relay.archive.importer.check_line`, as an import's lines do, and are stored
through the writer's ingest, chunk by chunk (a page or 200 ids at a time), each committed
before the next is asked for: memory stays bounded by a page and an interrupted sync keeps
what it stored.

An interrupted negentropy sync needs no memory of its own: run again, it reconciles what is
stored by then and transfers only the rest. A sync by REQ pages keeps a checkpoint
(:mod:`relay.storage.checkpoints`) per upstream, filter and direction, written after each
stored page and cleared when the sync completes, and continues from it when run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
from websockets.asyncio.client import ClientConnection, connect

from relay.archive.importer import Rejection, check_line
from relay.nostr.filters import Filter
from relay.nostr.limits import Limits
from relay.nostr.negentropy import Items, initiate, reconcile
from relay.nostr.policy import ConnInfo
from relay.nostr.rules import Rules
from relay.storage.checkpoints import Checkpoint, CheckpointKey, SyncCheckpoints
from relay.storage.postgres import IngestStatus, Store

__all__ = [
    "Direction",
    "SyncProgress",
    "SyncReport",
    "UpstreamError",
    "UpstreamRelay",
    "canonical_filter",
    "connect_upstream",
    "sync_upstream",
]

Direction = Literal["down", "up", "both"]

_IDS_PER_REQ = 200
_PAGE = 500
_FRAME = 60_000
_SUB = "fitrelay-sync"
_dec = msgspec.json.Decoder()
_enc = msgspec.json.Encoder()


class UpstreamError(Exception):
    """The upstream relay misbehaved or went silent."""


class _Counts(msgspec.Struct):
    """The counts a checkpoint keeps."""

    need: int = 0
    fetched: int = 0
    duplicate: int = 0
    rejected: dict[str, int] = {}
    sent: int = 0
    refused: dict[str, int] = {}


@dataclass(slots=True)
class SyncReport:
    method: str = "negentropy"
    have: int = 0
    """Events stored here that upstream lacks (negentropy) or all local matches (REQ)."""
    need: int = 0
    """Events upstream has that are not stored here (negentropy), or all it sent (REQ)."""
    fetched: int = 0
    duplicate: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    """Published events upstream answered ``OK false``, by its reason."""
    resumed: str | None = None
    """Where a sync by REQ pages resumed from a checkpoint, said for the summary."""
    fetched_before: int = 0
    """Of ``fetched``, the events the interrupted runs stored (0 unless resumed)."""
    pages: int = 0
    """REQ pages stored, the interrupted runs' included."""
    largest_batch: int = 0
    """The most events handed to the store at once."""
    elapsed: float = 0.0
    """Seconds this run took."""

    def counts(self) -> str:
        return _enc.encode(
            _Counts(self.need, self.fetched, self.duplicate, self.rejected, self.sent, self.refused)
        ).decode()

    def restore(self, counts: str) -> None:
        saved = msgspec.json.decode(counts, type=_Counts)
        self.need, self.fetched, self.duplicate = saved.need, saved.fetched, saved.duplicate
        self.rejected, self.sent, self.refused = dict(saved.rejected), saved.sent, saved.refused
        self.fetched_before = saved.fetched

    def format(self, url: str) -> str:
        lines = [f"{url}: {self.method}"]
        if self.resumed is not None:
            lines.append(f"resumed {self.resumed}")
        lines += [
            f"have: {self.have}",
            f"need: {self.need}",
            f"fetched: {self.fetched}"
            + (f" ({self.fetched - self.fetched_before} this run)" if self.resumed else ""),
            f"duplicate: {self.duplicate}",
            f"rejected: {sum(self.rejected.values())}",
        ]
        lines += [f"  {reason}: {n}" for reason, n in sorted(self.rejected.items())]
        lines.append(f"sent: {self.sent}")
        lines.append(f"refused by upstream: {sum(self.refused.values())}")
        lines += [f"  {reason}: {n}" for reason, n in sorted(self.refused.items())]
        lines.append(f"elapsed: {self.elapsed:.1f} s")
        return "\n".join(lines)


class SyncProgress:
    """What a sync says as it goes, for a progress bar (:mod:`relay.archive.syncbar`); this
    base ignores it all."""

    def reconciling(self, rounds: int) -> None:
        """A negentropy round was answered (``rounds`` so far)."""

    def fetching(self, total: int | None) -> None:
        """Fetching begins: ``total`` events to fetch, None when not known (REQ pages)."""

    def stored(self, batch: int, report: SyncReport, reached: int | None = None) -> None:
        """``batch`` fetched events were handed to the store and committed; a REQ page has
        reached ``created_at`` ``reached``."""

    def sending(self, total: int) -> None:
        """Publishing ``total`` events begins."""

    def published(self, batch: int, report: SyncReport) -> None:
        """``batch`` events were answered by the upstream."""

    def close(self) -> None:
        """The sync ended, one way or another."""


class UpstreamRelay:
    """One WebSocket connection to another relay, as a client: ``fitrelay sync`` and the
    fetcher both read it through here."""

    def __init__(self, ws: ClientConnection, timeout: float) -> None:
        self.ws = ws
        self.timeout = timeout

    async def send(self, message: object) -> None:
        await self.ws.send(_enc.encode(message).decode())

    async def recv(self) -> list[Any]:
        try:
            async with asyncio.timeout(self.timeout):
                data = await self.ws.recv()
        except TimeoutError:
            raise UpstreamError(f"no answer within {self.timeout:g} s") from None
        message = _dec.decode(data)
        if not isinstance(message, list) or not message:
            raise UpstreamError("upstream sent a frame that is not a Nostr message")
        return message

    async def req(self, *filters: dict[str, Any], most: int | None = None) -> list[Any]:
        """The events (decoded) of one REQ, up to EOSE; more than ``most`` of them is a
        broken upstream."""
        await self.send(["REQ", _SUB, *filters])
        events: list[Any] = []
        while True:
            message = await self.recv()
            if message[0] == "EVENT" and len(message) == 3 and message[1] == _SUB:
                events.append(message[2])
                if most is not None and len(events) > most:
                    raise UpstreamError("more events than asked for")
            elif message[0] == "EOSE" and message[1:2] == [_SUB]:
                await self.send(["CLOSE", _SUB])
                return events
            elif message[0] == "CLOSED" and message[1:2] == [_SUB]:
                raise UpstreamError(f"upstream closed the REQ: {message[2:3]}")

    async def negentropy(
        self, flt: dict[str, Any], items: Items, on_round: Callable[[int], None] | None = None
    ) -> tuple[set[str], set[str]] | None:
        """``(have, need)`` by NIP-77, or None when upstream does not speak it; ``on_round``
        is told the number of rounds answered so far after each."""
        await self.send(["NEG-OPEN", _SUB, flt, initiate(items, _FRAME).hex()])
        have: set[str] = set()
        need: set[str] = set()
        rounds = 0
        while True:
            message = await self.recv()
            if message[0] == "NOTICE" or (message[0] == "NEG-ERR" and message[1:2] == [_SUB]):
                if have or need:
                    raise UpstreamError(f"upstream ended the sync: {message[-1]}")
                return None
            if message[0] != "NEG-MSG" or message[1:2] != [_SUB]:
                continue
            reply, found_have, found_need = reconcile(items, bytes.fromhex(message[2]), _FRAME)
            rounds += 1
            if on_round is not None:
                on_round(rounds)
            have.update(i.hex() for i in found_have)
            need.update(i.hex() for i in found_need)
            if reply is None:
                await self.send(["NEG-CLOSE", _SUB])
                return have, need
            await self.send(["NEG-MSG", _SUB, reply.hex()])


_SYNC = ConnInfo()


async def _store_fetched(
    store: Store,
    fetched: list[Any],
    limits: Limits,
    now: int,
    report: SyncReport,
    rules: Rules | None = None,
) -> None:
    events, texts = [], []
    for event in fetched:
        checked = check_line(_enc.encode(event), limits, now)
        if isinstance(checked, Rejection):
            report.rejected[checked.reason] = report.rejected.get(checked.reason, 0) + 1
            continue
        refused = None if rules is None else rules.refuse_event(_SYNC, checked.event, now)
        if refused is not None:
            report.rejected[refused.message] = report.rejected.get(refused.message, 0) + 1
            continue
        events.append(checked.event)
        texts.append(checked.raw)
    if not events:
        return
    report.largest_batch = max(report.largest_batch, len(events))
    for status in await store.ingest(events, texts):
        accepted, message = status.reply
        if status is IngestStatus.STORED:
            report.fetched += 1
        elif accepted:
            report.duplicate += 1
        else:
            report.rejected[message] = report.rejected.get(message, 0) + 1


async def _publish(upstream: UpstreamRelay, raws: list[str], report: SyncReport) -> None:
    waiting: set[str] = set()
    for raw in raws:
        event = _dec.decode(raw)
        waiting.add(event["id"])
        await upstream.ws.send('["EVENT",' + raw + "]")
    while waiting:
        message = await upstream.recv()
        if message[0] == "OK" and len(message) >= 3 and message[1] in waiting:
            waiting.discard(message[1])
            if message[2] is True:
                report.sent += 1
            else:
                reason = str(message[3]) if len(message) > 3 else ""
                report.refused[reason] = report.refused.get(reason, 0) + 1


@contextlib.asynccontextmanager
async def connect_upstream(
    url: str, timeout: float, max_size: int | None = None
) -> AsyncIterator[UpstreamRelay]:
    """A connection to ``url`` that waits at most ``timeout`` for it to open and for each
    message after; ``max_size`` bounds the frames it takes (None: any size)."""
    async with asyncio.timeout(timeout):
        ws = await connect(url, max_size=max_size, open_timeout=timeout)
    async with ws:
        yield UpstreamRelay(ws, timeout)


def canonical_filter(raw_filter: dict[str, Any]) -> str:
    """``raw_filter`` as JSON that is the same for the same filter: keys sorted, and each
    array (a set in NIP-01) sorted without repeats. It keys a sync's checkpoint."""
    canonical: dict[str, Any] = {}
    for key, value in raw_filter.items():
        if isinstance(value, list):
            value = sorted(set(value), key=lambda v: (type(v).__name__, v))
        canonical[key] = value
    return msgspec.json.encode(canonical, order="sorted").decode()


async def sync_upstream(
    store: Store,
    url: str,
    flt: Filter,
    raw_filter: dict[str, Any],
    direction: Direction,
    limits: Limits,
    *,
    timeout: float = 10.0,
    clock: Callable[[], float] = time.time,
    restart: bool = False,
    progress: SyncProgress | None = None,
    page_size: int = _PAGE,
    ids_per_req: int = _IDS_PER_REQ,
    rules: Rules | None = None,
) -> SyncReport:
    """Reconcile the events ``flt`` matches here with ``url``'s (``raw_filter`` is the same
    filter as JSON, as sent upstream).

    A sync by REQ pages continues from the checkpoint an interrupted run with the same
    ``url``, filter and direction left, unless ``restart``, which clears it; the checkpoint
    is cleared when the sync completes. At most ``page_size`` events (a REQ page) or
    ``ids_per_req`` (a chunk of ids, fetched or published) are held at once. Fetched
    events pass ``rules`` (``[policy]``'s lists and work) besides the checks of an import.

    Raises:
        UpstreamError: the upstream went silent or broke the protocol.
        OSError: it could not be reached.
    """
    started = time.monotonic()
    progress = progress or SyncProgress()
    now = int(clock())
    report = SyncReport()
    checkpoints = SyncCheckpoints(store.pool)
    key = CheckpointKey(url, canonical_filter(raw_filter), direction)
    if restart:
        await checkpoints.clear(key)
    try:
        rows = await store.items(flt, now, limits.max_negentropy_records)
        items = Items(rows)
        async with connect_upstream(url, timeout) as upstream:
            sync = _Sync(
                upstream, store, limits, now, report, progress, page_size, ids_per_req, rules
            )
            found = await upstream.negentropy(raw_filter, items, progress.reconciling)
            if found is not None:
                await sync.by_negentropy(found, direction)
            else:
                report.method = "req"
                report.have = len(items)
                point = await checkpoints.load(key)
                if point is not None:
                    sync.resume(point)
                saved = _Saved(checkpoints, key, report)
                if direction != "up" and (point is None or point.phase == "down"):
                    await sync.page_down(raw_filter, point, saved)
                if direction != "down":
                    upload = sorted(i.hex() for i in items.ids(0, len(items)))
                    if point is not None and point.phase == "up" and point.sent_through:
                        upload = [i for i in upload if i > point.sent_through]
                    await saved.sent_through(point.sent_through if point else None)
                    await sync.upload(upload, saved.sent_through)
        await checkpoints.clear(key)
    finally:
        report.elapsed = time.monotonic() - started
        progress.close()
    return report


@dataclass(slots=True)
class _Saved:
    """Writes a sync by REQ pages' checkpoint."""

    checkpoints: SyncCheckpoints
    key: CheckpointKey
    report: SyncReport

    async def reached(self, until: int, boundary: set[str]) -> None:
        report = self.report
        point = Checkpoint("down", until, frozenset(boundary), None, report.pages, report.counts())
        await self.checkpoints.save(self.key, point)

    async def sent_through(self, last: str | None) -> None:
        report = self.report
        point = Checkpoint("up", None, frozenset(), last, report.pages, report.counts())
        await self.checkpoints.save(self.key, point)


@dataclass(slots=True)
class _Sync:
    """One sync's connection and what it has done."""

    upstream: UpstreamRelay
    store: Store
    limits: Limits
    now: int
    report: SyncReport
    progress: SyncProgress
    page_size: int
    ids_per_req: int
    rules: Rules | None

    async def by_negentropy(self, found: tuple[set[str], set[str]], direction: Direction) -> None:
        """Fetch what only upstream has, chunk by chunk, and publish what only this side
        has. Each chunk is committed before the next is asked for, so a run again after an
        interruption reconciles what is stored by then and transfers only the rest."""
        have, need = found
        report = self.report
        report.have, report.need = len(have), len(need)
        if direction != "up":
            wanted = sorted(need)
            self.progress.fetching(len(wanted))
            step = self.ids_per_req
            for start in range(0, len(wanted), step):
                chunk = wanted[start : start + step]
                fetched = await self.upstream.req(
                    {"ids": chunk, "limit": len(chunk)}, most=len(chunk)
                )
                await _store_fetched(self.store, fetched, self.limits, self.now, report, self.rules)
                self.progress.stored(len(chunk), report)
        if direction != "down":
            await self.upload(sorted(have))

    async def upload(
        self, ids: list[str], after_chunk: Callable[[str], Awaitable[None]] | None = None
    ) -> None:
        """Publish the stored events ``ids`` name, a chunk at a time, each chunk answered
        before the next is read; ``after_chunk`` is awaited with a chunk's last id."""
        self.progress.sending(len(ids))
        step = self.ids_per_req
        for start in range(0, len(ids), step):
            chunk = ids[start : start + step]
            flt = Filter(ids=frozenset(chunk), limit=len(chunk))
            stored = await self.store.query([flt], self.now)
            await _publish(self.upstream, [raw for _id, raw in stored], self.report)
            if after_chunk is not None:
                await after_chunk(chunk[-1])
            self.progress.published(len(chunk), self.report)

    def resume(self, point: Checkpoint) -> None:
        report = self.report
        report.restore(point.counts)
        report.pages = point.pages
        began = _utc(point.started_at)
        if point.phase == "up":
            report.resumed = (
                f"publishing after id {point.sent_through or '(none)'}, {report.sent} sent"
                f" (sync begun {began})"
            )
        else:
            reached = (
                "the start"
                if point.until_at is None
                else f"until {point.until_at} ({_utc(point.until_at)})"
            )
            report.resumed = (
                f"from {reached}, after {point.pages} pages and {report.fetched} events"
                f" fetched (sync begun {began})"
            )

    async def page_down(
        self, raw_filter: dict[str, Any], point: Checkpoint | None, saved: _Saved
    ) -> None:
        """Every event upstream has for the filter (its ``limit`` newest, when it has one),
        by pages going back with ``until``, each stored and checkpointed before the next is
        asked for. ``until`` is inclusive, so events sharing the boundary second are not
        lost; the ids already stored at that second are the only ones remembered. (More
        than a page of events in one second cannot be paged past.)"""
        report = self.report
        until: int | None = raw_filter.get("until")
        boundary: set[str] = set()
        if point is not None:
            until, boundary = point.until_at, set(point.boundary_ids)
        cap: int | None = raw_filter.get("limit")
        self.progress.fetching(cap)
        while cap is None or report.need < cap:
            want = self.page_size if cap is None else min(self.page_size, cap - report.need)
            page = dict(raw_filter, limit=want)
            if until is not None:
                page["until"] = until
            events = await self.upstream.req(page, most=want)
            fresh = [e for e in events if not (isinstance(e, dict) and e.get("id") in boundary)]
            times = [
                e["created_at"]
                for e in fresh
                if isinstance(e, dict) and type(e.get("created_at")) is int
            ]
            if not fresh or not times:
                await _store_fetched(self.store, fresh, self.limits, self.now, report, self.rules)
                return
            oldest = min(times)
            at_oldest = {
                e["id"]
                for e in fresh
                if isinstance(e, dict)
                and e.get("created_at") == oldest
                and isinstance(e.get("id"), str)
            }
            boundary = boundary | at_oldest if oldest == until else at_oldest
            until = oldest
            report.need += len(fresh)
            await _store_fetched(self.store, fresh, self.limits, self.now, report, self.rules)
            report.pages += 1
            await saved.reached(until, boundary)
            self.progress.stored(len(fresh), report, until)


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
