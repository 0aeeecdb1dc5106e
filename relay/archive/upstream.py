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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
from websockets.asyncio.client import ClientConnection, connect

from relay.archive.importer import Rejection, check_line
from relay.nostr.filters import Filter
from relay.nostr.limits import Limits
from relay.nostr.negentropy import Items, initiate, reconcile
from relay.storage.postgres import IngestStatus, Store

__all__ = ["Direction", "SyncReport", "UpstreamError", "sync_upstream"]

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


class _Upstream:
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

    async def req(self, flt: dict[str, Any]) -> list[bytes]:
        """The raw events of one REQ, up to EOSE."""
        await self.send(["REQ", _SUB, flt])
        events: list[bytes] = []
        while True:
            message = await self.recv()
            if message[0] == "EVENT" and len(message) == 3 and message[1] == _SUB:
                events.append(_enc.encode(message[2]))
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
    store: Store, raws: list[bytes], limits: Limits, now: int, report: SyncReport
) -> None:
    events, texts = [], []
    for raw in raws:
        checked = check_line(raw, limits, now)
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


async def _publish(upstream: _Upstream, raws: list[str], report: SyncReport) -> None:
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
    async with connect(url, max_size=None, open_timeout=timeout) as ws:
        upstream = _Upstream(ws, timeout)
        found = await upstream.negentropy(raw_filter, items)
        if found is not None:
            have, need = found
            report.have, report.need = len(have), len(need)
            if direction != "up":
                wanted = sorted(need)
                for start in range(0, len(wanted), _IDS_PER_REQ):
                    chunk = wanted[start : start + _IDS_PER_REQ]
                    raws = await upstream.req({"ids": chunk, "limit": len(chunk)})
                    await _store_fetched(store, raws, limits, now, report)
            upload = sorted(have) if direction != "down" else []
        else:
            report.method = "req"
            if direction != "up":
                raws = await _page(upstream, raw_filter)
                report.need = len(raws)
                await _store_fetched(store, raws, limits, now, report)
            upload = [i.hex() for i in items.ids(0, len(items))] if direction != "down" else []
            report.have = len(items)
        for start in range(0, len(upload), _IDS_PER_REQ):
            chunk = upload[start : start + _IDS_PER_REQ]
            stored = await store.query([Filter(ids=frozenset(chunk), limit=len(chunk))], now)
            await _publish(upstream, [raw for _id, raw in stored], report)
    return report


async def _page(upstream: _Upstream, raw_filter: dict[str, Any]) -> list[bytes]:
    """Every event upstream has for the filter, by REQ pages going back with ``until``
    (inclusive, so events sharing the boundary second are not lost)."""
    seen: dict[str, bytes] = {}
    until = raw_filter.get("until")
    while True:
        page = dict(raw_filter, limit=_PAGE)
        if until is not None:
            page["until"] = until
        raws = await upstream.req(page)
        fresh = 0
        oldest = None
        for raw in raws:
            event = _dec.decode(raw)
            if event["id"] not in seen:
                seen[event["id"]] = raw
                fresh += 1
            created = event["created_at"]
            oldest = created if oldest is None else min(oldest, created)
        if not fresh or oldest is None:
            return list(seen.values())
        until = oldest
