"""One WebSocket connection: drives a :class:`~relay.nostr.session.Session`.

Reading, storing, querying and sending are decoupled: EVENTs are handed to the writer and
answered when their batch commits (so a publisher can keep many in flight), REQ and COUNT run
as tasks, and everything outbound goes through one bounded queue drained by a sender task. A
client that lets more than ``max_pending_outbound_bytes`` pile up is disconnected.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field

import asyncpg
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from relay.config import Config
from relay.nostr.errors import NostrError
from relay.nostr.event import Event, KindClass, kind_class
from relay.nostr.filters import Filter
from relay.nostr.messages import encode_eose, encode_events
from relay.nostr.policy import Policies
from relay.nostr.reconciliation import LoadItems
from relay.nostr.replies import NegMsg, Reply, encode_reply
from relay.nostr.session import Count, Session, StoreEvent, Subscribe, Unsubscribe
from relay.server.live import LiveIndex, LogTail
from relay.server.metrics import Metrics
from relay.server.writer import Writer, WriterUnavailable
from relay.storage.cachedstore import QueryStore

__all__ = ["Connection"]

log = logging.getLogger(__name__)

MAX_EVENTS_IN_FLIGHT = 1_000
_WRITE_BATCH_BYTES = 256 * 1024
"""At most this much queued outbound data is framed and written at once."""


def _text_frame_header(size: int) -> bytes:
    """The header of a final, unmasked text frame of ``size`` bytes (RFC 6455 section 5.2),
    the frame a server sends when no extension is in use."""
    if size < 126:
        return bytes((0x81, size))
    if size < 65_536:
        return b"\x81\x7e" + size.to_bytes(2, "big")
    return b"\x81\x7f" + size.to_bytes(8, "big")


@dataclass(slots=True)
class _Subscription:
    task: asyncio.Task[None] | None = None
    buffer: list[tuple[str, bytes]] | None = field(default_factory=list)
    """Live matches held back until EOSE; None once the stored events are sent."""
    seen_upto: int = 0
    """Log positions up to this one were committed before the query: not live news."""
    answered: set[str] = field(default_factory=set)
    """Ids in the stored answer that the log tail had not dispatched yet."""


class Connection:
    """The asyncio side of one client."""

    def __init__(
        self,
        ws: ServerConnection,
        config: Config,
        store: QueryStore,
        writer: Writer,
        index: LiveIndex,
        conn_id: int,
        metrics: Metrics,
        tail: LogTail,
        policies: Policies,
    ) -> None:
        self.tail = tail
        self.ws = ws
        self.metrics = metrics
        self.close_reason: str | None = None
        self.config = config
        self.store = store
        self.writer = writer
        self.index = index
        self.conn_id = conn_id
        remote = ws.remote_address
        self.session = Session(
            config.relay.limits, policies, conn_id=conn_id, ip=str(remote[0]) if remote else ""
        )
        self.subs: dict[str, _Subscription] = {}
        self.writes: set[asyncio.Task[None]] = set()
        self.counts: set[asyncio.Task[None]] = set()
        self.negentropy_loads: set[asyncio.Task[None]] = set()
        self.in_flight = asyncio.Semaphore(MAX_EVENTS_IN_FLIGHT)
        self.outbound: collections.deque[bytes] = collections.deque()
        self.outbound_bytes = 0
        self.wakeup = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self.flush_scheduled = False
        self.sender_waiting = False
        """The socket's buffer was full: the sender task writes until it drains."""
        self.closing = False
        self.query_timeout = config.relay.query_timeout_ms / 1000
        self.plain_frames = not ws.protocol.extensions
        """No extension was negotiated: text frames are built here (see :meth:`_write`)."""

    # -- outbound ---------------------------------------------------------------------------

    def reply(self, reply: Reply) -> None:
        """Count and queue one reply, written at the end of this turn of the loop."""
        if self.closing:
            return
        self.metrics.count_reply(reply)
        self._queue(encode_reply(reply))

    def _send_event(self, data: bytes) -> None:
        """Queue one live EVENT frame that was held back until EOSE."""
        if self.closing:
            return
        self.metrics.sent[b"EVENT"].inc()
        self._queue(data)

    def _queue(self, *messages: bytes) -> None:
        self.outbound.extend(messages)
        self.outbound_bytes += sum(map(len, messages))
        if self.outbound_bytes > self.config.relay.max_pending_outbound_bytes:
            log.info("conn %d: disconnecting slow client", self.conn_id)
            self.metrics.slow_disconnects.inc()
            self._abort(1008, "slow client: too much unsent data", "slow_client")
            return
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self._flush)

    def deliver(self, sub_id: str, event_id: str, data: bytes, seq: int | None) -> bool:
        """Called by the live index for a matching event; True when sent now as live."""
        sub = self.subs.get(sub_id)
        if sub is None:
            return False
        if seq is not None and (seq <= sub.seen_upto or event_id in sub.answered):
            sub.answered.discard(event_id)  # in the stored answer already: not sent twice
            return False
        if sub.buffer is not None:
            sub.buffer.append((event_id, data))
            return False
        if self.closing:
            return True
        if not self.outbound and self._writable():
            self._write([data])  # each subscriber gets it as soon as its turn comes
        else:
            self._queue(data)
        return True  # counted by the index's dispatch, once for all its deliveries

    def _abort(self, code: int, reason: str, label: str) -> None:
        self.close_reason = label
        self.closing = True
        self.outbound.clear()
        self.outbound_bytes = 0
        self.wakeup.set()
        asyncio.get_running_loop().create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        try:
            async with asyncio.timeout(2):
                await self.ws.close(code, reason)
        except TimeoutError:
            self.ws.transport.abort()

    def _flush(self) -> None:
        """Frame and write what was queued during this turn of the loop, in one write: a
        REQ's answer, the OKs of a commit, a live event. When the socket is not taking data
        (its buffer is over the high-water mark), the sender task takes over and waits."""
        self.flush_scheduled = False
        ws = self.ws
        if self.closing or not self.outbound or self.sender_waiting:
            return
        if not self._writable():
            self.sender_waiting = True
            self.wakeup.set()
            return
        while self.outbound:
            self._write(self._take_outbound(_WRITE_BATCH_BYTES))
            if ws.paused and self.outbound:
                self.sender_waiting = True
                self.wakeup.set()
                return

    def _write(self, batch: list[bytes]) -> None:
        """Frame ``batch`` as text messages and hand them to the socket in one call. Without
        extensions a server's frame is a header and the payload as it is, so the header is
        built here (websockets' framing costs more than the write on a fan-out); with
        permessage-deflate, websockets frames and compresses."""
        ws = self.ws
        if self.plain_frames:
            parts: list[bytes] = []
            for data in batch:
                parts.append(_text_frame_header(len(data)))
                parts.append(data)
            ws.transport.writelines(parts)
        else:
            for data in batch:
                ws.protocol.send_text(data)
            ws.transport.writelines(ws.protocol.data_to_send())

    def _writable(self) -> bool:
        """The socket takes data now: open, and its buffer under the high-water mark."""
        ws = self.ws
        return (
            not self.sender_waiting
            and not ws.paused
            and ws.protocol.state is State.OPEN
            and not ws.transport.is_closing()
        )

    async def _sender(self) -> None:
        """Sends what :meth:`_flush` could not, waiting for the socket to drain."""
        ws = self.ws
        while True:
            while not self.sender_waiting:
                if self.closing:
                    return
                self.wakeup.clear()
                await self.wakeup.wait()
            if self.closing:
                return
            # send_context waits for the buffer to drain (or raises once the connection is
            # closed); framing and writing happen before that wait, so order is kept.
            async with ws.send_context():
                self._write(self._take_outbound(_WRITE_BATCH_BYTES))
            if not self.outbound:
                self.sender_waiting = False

    def _take_outbound(self, max_bytes: int) -> list[bytes]:
        batch: list[bytes] = []
        size = 0
        while self.outbound and size < max_bytes:
            data = self.outbound.popleft()
            size += len(data)
            batch.append(data)
        self.outbound_bytes -= size
        return batch

    # -- inbound ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it closes."""
        sender = asyncio.create_task(self._sender())
        try:
            async for message in self.ws:
                if isinstance(message, bytes):
                    self.reply(self.session.binary())
                    continue
                await self._handle(message)
        except ConnectionClosed:
            pass
        finally:
            self.closing = True
            self.index.remove_all(self, list(self.subs))
            for sub in self.subs.values():
                if sub.task is not None:
                    sub.task.cancel()
            for task in self.counts:
                task.cancel()
            for task in self.negentropy_loads:
                task.cancel()
            self.subs.clear()
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def _handle(self, message: str) -> None:
        session = self.session
        outcomes = session.receive(message, int(time.time()))
        verb = session.verb
        self.metrics.received.get(verb, self.metrics.received["invalid"]).inc()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("conn %d: received %s (%d bytes)", self.conn_id, verb, len(message))
        for outcome in outcomes:
            if isinstance(outcome, StoreEvent):
                await self._store(outcome.event, outcome.raw)
            elif isinstance(outcome, Subscribe):
                self._subscribe(outcome.sub_id, outcome.filters)
            elif isinstance(outcome, Unsubscribe):
                self._unsubscribe(outcome.sub_id)
            elif isinstance(outcome, Count):
                self._spawn_count(outcome.sub_id, outcome.filters)
            elif isinstance(outcome, LoadItems):
                self._spawn_negentropy(outcome)
            else:
                self.reply(outcome)
                if isinstance(outcome, NegMsg):
                    self._expire_later()

    # -- EVENT ------------------------------------------------------------------------------

    async def _store(self, event: Event, raw: bytes) -> None:
        if kind_class(event.kind) is KindClass.EPHEMERAL:
            self.index.dispatch(event, raw, time.monotonic())
            self.reply(self.session.broadcast(event))
            return
        await self.in_flight.acquire()
        task = asyncio.create_task(self._commit(event, raw.decode()))
        self.writes.add(task)
        task.add_done_callback(self.writes.discard)

    async def _commit(self, event: Event, raw: str) -> None:
        try:
            policies = self.session.policies
            if policies.admit_event:
                refused = await policies.admit(self.session.conn, event)
                if refused is not None:
                    self.reply(self.session.refused(event, refused))
                    return
            status = await self.writer.submit(event, raw)
        except WriterUnavailable:
            self.reply(self.session.store_failed(event))
        else:
            self.reply(self.session.stored(event, status))
        finally:
            self.in_flight.release()

    async def _own_writes(self) -> None:
        """Wait for this connection's earlier EVENTs, so a REQ after them sees them."""
        if self.writes:
            await asyncio.gather(*self.writes, return_exceptions=True)

    # -- REQ / CLOSE / COUNT ----------------------------------------------------------------

    def _subscribe(self, sub_id: str, filters: tuple[Filter, ...]) -> None:
        self._unsubscribe(sub_id)
        sub = _Subscription()
        self.subs[sub_id] = sub
        self.index.add(self, sub_id, filters)
        sub.task = asyncio.create_task(self._initial(sub_id, sub, filters))

    def _unsubscribe(self, sub_id: str) -> None:
        sub = self.subs.pop(sub_id, None)
        self.index.remove(self, sub_id)
        if sub is not None and sub.task is not None and not sub.task.done():
            sub.task.cancel()

    def _fail(self, sub_id: str, *, timed_out: bool) -> None:
        self.subs.pop(sub_id, None)
        self.index.remove(self, sub_id)
        self.reply(self.session.query_failed(sub_id, timed_out=timed_out))

    async def _initial(self, sub_id: str, sub: _Subscription, filters: tuple[Filter, ...]) -> None:
        started = time.monotonic()
        await self._own_writes()
        sub.seen_upto = self.tail.known_committed()
        try:
            async with asyncio.timeout(self.query_timeout):
                rows = await self.store.query(filters, int(time.time()))
        except (TimeoutError, asyncpg.QueryCanceledError):
            self.metrics.queries_cancelled.inc()
            self._fail(sub_id, timed_out=True)
            return
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            log.exception("conn %d: query failed", self.conn_id)
            self._fail(sub_id, timed_out=False)
            return
        if not self.closing:
            answer = encode_events(sub_id, (raw for _event_id, raw in rows))
            answer.append(encode_eose(sub_id))
            self.metrics.sent[b"EVENT"].inc(len(rows))
            self.metrics.sent[b"EOSE"].inc()
            self._queue(*answer)
        sub.answered = self.tail.undispatched_local(event_id.hex() for event_id, _ in rows)
        self.metrics.req_events.inc(len(rows))
        self.metrics.req_eose.observe(time.monotonic() - started)
        held, sub.buffer = sub.buffer or [], None
        if held:
            sent = {event_id.hex() for event_id, _raw in rows}
            for event_id, data in held:
                if event_id not in sent:
                    self._send_event(data)

    def _spawn_count(self, sub_id: str, filters: tuple[Filter, ...]) -> None:
        task = asyncio.create_task(self._count(sub_id, filters))
        self.counts.add(task)
        task.add_done_callback(self.counts.discard)

    async def _count(self, sub_id: str, filters: tuple[Filter, ...]) -> None:
        started = time.monotonic()
        await self._own_writes()
        try:
            async with asyncio.timeout(self.query_timeout):
                total = await self.store.count(filters, int(time.time()))
        except (TimeoutError, asyncpg.QueryCanceledError):
            self.metrics.queries_cancelled.inc()
            self.reply(self.session.count_failed(sub_id, timed_out=True))
            return
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            log.exception("conn %d: count failed", self.conn_id)
            self.reply(self.session.count_failed(sub_id, timed_out=False))
            return
        self.metrics.count_seconds.observe(time.monotonic() - started)
        self.reply(self.session.counted(sub_id, total))

    # -- NEG-OPEN / NEG-MSG / NEG-CLOSE (NIP-77) ----------------------------------------------

    def _spawn_negentropy(self, load: LoadItems) -> None:
        task = asyncio.create_task(self._load_items(load))
        self.negentropy_loads.add(task)
        task.add_done_callback(self.negentropy_loads.discard)

    async def _load_items(self, load: LoadItems) -> None:
        """Load the items of a NEG-OPEN and answer its first message."""
        reconciliations = self.session.negentropy
        await self._own_writes()
        try:
            async with asyncio.timeout(self.query_timeout):
                rows = await self.store.items(load.filter, int(time.time()), load.limit)
        except (TimeoutError, asyncpg.QueryCanceledError):
            self.metrics.queries_cancelled.inc()
            failed = reconciliations.failed(load.sub_id, load.token, _ITEMS_SLOW)
            if failed is not None:
                self.reply(failed)
            return
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            log.exception("conn %d: negentropy query failed", self.conn_id)
            failed = reconciliations.failed(load.sub_id, load.token, _ITEMS_FAILED)
            if failed is not None:
                self.reply(failed)
            return
        answer = reconciliations.loaded(load.sub_id, load.token, rows, int(time.time()))
        if answer is not None:
            self.reply(answer)
            self._expire_later()

    def _expire_later(self) -> None:
        idle = self.config.relay.limits.negentropy_idle_seconds
        if idle:
            self.loop.call_later(idle + 0.5, self._expire_negentropy)

    def _expire_negentropy(self) -> None:
        for reply in self.session.negentropy.expire(int(time.time())):
            self.reply(reply)


_ITEMS_SLOW = NostrError("blocked", "the negentropy query took too long; narrow the filter")
_ITEMS_FAILED = NostrError("error", "could not run the negentropy query")
