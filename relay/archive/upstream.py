"""``fitrelay sync``: reconcile the stored events of a filter with an upstream relay.

With an upstream that speaks NIP-77 the two sets are reconciled by negentropy
(:mod:`relay.nostr.negentropy`, this side the initiator), then the events only upstream has
are fetched by id and the ones only stored here are published to it. An upstream that answers
NEG-OPEN with a NOTICE or NEG-ERR is read instead by REQ, page after page going back with
``until`` (and is sent every local match when uploading). Fetched events go through the
checks of :func:`relay.archive.importer.check_line`, as an import's lines do, and are stored
through the writer's ingest.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
from websockets.asyncio.client import ClientConnection, connect

from relay.archive.importer import Rejection, check_line
from relay.nostr.filters import Filter
from relay.nostr.limits import Limits
from relay.nostr.negentropy import Items, initiate, reconcile
from relay.storage.postgres import IngestStatus, Store

__all__ = [
    "Direction",
    "SyncReport",
    "UpstreamError",
    "UpstreamRelay",
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

    def format(self, url: str) -> str:
        lines = [
            f"{url}: {self.method}",
            f"have: {self.have}",
            f"need: {self.need}",
            f"fetched: {self.fetched}",
            f"duplicate: {self.duplicate}",
            f"rejected: {sum(self.rejected.values())}",
        ]
        lines += [f"  {reason}: {n}" for reason, n in sorted(self.rejected.items())]
        lines.append(f"sent: {self.sent}")
        lines.append(f"refused by upstream: {sum(self.refused.values())}")
        lines += [f"  {reason}: {n}" for reason, n in sorted(self.refused.items())]
        return "\n".join(lines)


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
        self, flt: dict[str, Any], items: Items
    ) -> tuple[set[str], set[str]] | None:
        """``(have, need)`` by NIP-77, or None when upstream does not speak it."""
        await self.send(["NEG-OPEN", _SUB, flt, initiate(items, _FRAME).hex()])
        have: set[str] = set()
        need: set[str] = set()
        while True:
            message = await self.recv()
            if message[0] == "NOTICE" or (message[0] == "NEG-ERR" and message[1:2] == [_SUB]):
                if have or need:
                    raise UpstreamError(f"upstream ended the sync: {message[-1]}")
                return None
            if message[0] != "NEG-MSG" or message[1:2] != [_SUB]:
                continue
            reply, found_have, found_need = reconcile(items, bytes.fromhex(message[2]), _FRAME)
            have.update(i.hex() for i in found_have)
            need.update(i.hex() for i in found_need)
            if reply is None:
                await self.send(["NEG-CLOSE", _SUB])
                return have, need
            await self.send(["NEG-MSG", _SUB, reply.hex()])


async def _store_fetched(
    store: Store, fetched: list[Any], limits: Limits, now: int, report: SyncReport
) -> None:
    events, texts = [], []
    for event in fetched:
        checked = check_line(_enc.encode(event), limits, now)
        if isinstance(checked, Rejection):
            report.rejected[checked.reason] = report.rejected.get(checked.reason, 0) + 1
        else:
            events.append(checked.event)
            texts.append(checked.raw)
    if not events:
        return
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
) -> SyncReport:
    """Reconcile the events ``flt`` matches here with ``url``'s (``raw_filter`` is the same
    filter as JSON, as sent upstream).

    Raises:
        UpstreamError: the upstream went silent or broke the protocol.
        OSError: it could not be reached.
    """
    now = int(clock())
    report = SyncReport()
    rows = await store.items(flt, now, limits.max_negentropy_records)
    items = Items(rows)
    async with connect_upstream(url, timeout) as upstream:
        found = await upstream.negentropy(raw_filter, items)
        if found is not None:
            have, need = found
            report.have, report.need = len(have), len(need)
            if direction != "up":
                wanted = sorted(need)
                for start in range(0, len(wanted), _IDS_PER_REQ):
                    chunk = wanted[start : start + _IDS_PER_REQ]
                    fetched = await upstream.req({"ids": chunk, "limit": len(chunk)})
                    await _store_fetched(store, fetched, limits, now, report)
            upload = sorted(have) if direction != "down" else []
        else:
            report.method = "req"
            if direction != "up":
                fetched = await _page(upstream, raw_filter)
                report.need = len(fetched)
                await _store_fetched(store, fetched, limits, now, report)
            upload = [i.hex() for i in items.ids(0, len(items))] if direction != "down" else []
            report.have = len(items)
        for start in range(0, len(upload), _IDS_PER_REQ):
            chunk = upload[start : start + _IDS_PER_REQ]
            stored = await store.query([Filter(ids=frozenset(chunk), limit=len(chunk))], now)
            await _publish(upstream, [raw for _id, raw in stored], report)
    return report


async def _page(upstream: UpstreamRelay, raw_filter: dict[str, Any]) -> list[Any]:
    """Every event upstream has for the filter, by REQ pages going back with ``until``
    (inclusive, so events sharing the boundary second are not lost)."""
    seen: dict[str, Any] = {}
    until = raw_filter.get("until")
    while True:
        page = dict(raw_filter, limit=_PAGE)
        if until is not None:
            page["until"] = until
        fresh = 0
        oldest = None
        for event in await upstream.req(page):
            if event["id"] not in seen:
                seen[event["id"]] = event
                fresh += 1
            created = event["created_at"]
            oldest = created if oldest is None else min(oldest, created)
        if not fresh or oldest is None:
            return list(seen.values())
        until = oldest
