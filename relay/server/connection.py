"""One WebSocket connection: drives a :class:`~relay.nostr.session.Session`.

Reading, storing, querying and sending are decoupled: EVENTs are handed to the writer and
answered when their batch commits (so a publisher can keep many in flight), REQ and COUNT run
as tasks, and everything outbound goes through one bounded queue drained by a sender task. A
client that lets more than ``max_pending_outbound_bytes`` pile up is disconnected.

A connection's work is bounded: at most ``max_queries_in_flight`` stored queries (the session
refuses more), at most ``db.pool_max_per_connection`` of them on pooled connections at once,
and a large stored answer is read and queued a page at a time, the next page only once the
client has taken all but ``answer_buffer_bytes`` of what is queued, so a client reading at
any speed gets the whole answer and is never dropped as slow for it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field

import asyncpg
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from relay.config import Config
from relay.nostr.auth import AuthSettings
from relay.nostr.event import Event, KindClass, kind_class
from relay.nostr.filters import DEFAULT_RULES, Filter, FilterRules
from relay.nostr.messages import encode_eose, encode_events
from relay.nostr.policy import Policies
from relay.nostr.reconciliation import LoadItems
from relay.nostr.replies import NegMsg, Reply, encode_reply
from relay.nostr.session import Count, Session, StoreEvent, Subscribe, Unsubscribe
from relay.server.frames import write_text_frames
from relay.server.live import LiveIndex, LogTail
from relay.server.metrics import Metrics
from relay.server.reconciler import NegentropyLoads
from relay.server.writer import Writer, WriterUnavailable
from relay.storage.cachedstore import PagedStore
from relay.storage.cachekey import Rows
from relay.storage.failures import DATABASE_ERRORS
from relay.storage.mirror import MirroredStore, answer_pages
from relay.storage.postgres import PoolBusy

__all__ = ["Connection"]

log = logging.getLogger(__name__)

MAX_EVENTS_IN_FLIGHT = 1_000
_WRITE_BATCH_BYTES = 256 * 1024
"""At most this much queued outbound data is framed and written at once."""
PAGE_EVENTS = 500
"""A stored answer that can hold more events than this is read a page of this many at a
time (most REQs are answered with fewer, in one round trip)."""


@dataclass(slots=True)
class _Subscription:
    task: asyncio.Task[None] | None = None
    buffer: list[tuple[str, bytes]] | None = field(default_factory=list)
    """Live matches held back until EOSE; None once the stored events are sent."""
    seen_upto: int = 0
    """Log positions up to this one were committed before the query: not live news."""
    answered: set[str] = field(default_factory=set)
    """Ids in the stored answer that the log tail had not dispatched yet."""
    held_bytes: int = 0
    """Size of ``buffer``: bounded like the outbound queue."""


class Connection:
    """The asyncio side of one client."""

    def __init__(
        self,
        ws: ServerConnection,
        config: Config,
        store: PagedStore,
        writer: Writer,
        index: LiveIndex,
        conn_id: int,
        metrics: Metrics,
        tail: LogTail,
        policies: Policies,
        *,
        ip: str | None = None,
        rules: FilterRules = DEFAULT_RULES,
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
        if ip is None:
            remote = ws.remote_address
            ip = str(remote[0]) if remote else ""
        public_url = config.relay.public_url
        self.session = Session(
            config.relay.limits,
            policies,
            conn_id=conn_id,
            ip=ip,
            auth=AuthSettings.of(public_url, config.auth.window_seconds) if public_url else None,
            challenge=secrets.token_urlsafe(16) if public_url else "",
            rules=rules,
        )
        self.subs: dict[str, _Subscription] = {}
        self.writes: set[asyncio.Task[None]] = set()
        self.counts: set[asyncio.Task[None]] = set()
        self.memory = store if isinstance(store, MirroredStore) else None
        """``store`` when it can answer from memory in the REQ's own turn."""
        self.db_turns = asyncio.Semaphore(config.db.pool_max_per_connection)
        """Pooled connections this connection's queries may hold at once."""
        self.answer_buffer = min(
            config.relay.answer_buffer_bytes, config.relay.max_pending_outbound_bytes // 4
        )
        self.drained = asyncio.Event()
        """Set whenever queued data went to the socket (a stored answer waits on it)."""
        self.peak_answer_unsent = 0
        """Most bytes of this connection left unsent (queued here or in the socket's buffer)
        seen while a stored answer was queued: what a large answer costs in memory."""
        self.negentropy = NegentropyLoads(self)
        """The NEG-OPEN item loads of this connection (NIP-77)."""
        self.in_flight = asyncio.Semaphore(MAX_EVENTS_IN_FLIGHT)
        self.outbound: collections.deque[bytes] = collections.deque()
        self.outbound_bytes = 0
        self.wakeup = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self.flush_scheduled = False
        self.sender_waiting = False
        """The socket's buffer was full: the sender task writes until it drains."""
        self.closing = False
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
            self._drop_slow()
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
            sub.held_bytes += len(data)
            if sub.held_bytes > self.config.relay.max_pending_outbound_bytes:
                self._drop_slow()
            return False
        if self.closing:
            return True
        if not self.outbound and self._writable():
            self._write([data])  # each subscriber gets it as soon as its turn comes
        else:
            self._queue(data)
        return True  # counted by the index's dispatch, once for all its deliveries

    def _drop_slow(self) -> None:
        log.info("conn %d: disconnecting slow client", self.conn_id)
        self.metrics.slow_disconnects.inc()
        self._abort(1008, "slow client: too much unsent data", "slow_client")

    async def _room(self, target: int) -> None:
        """Wait until no more than ``target`` bytes are queued for the client and the socket
        takes data (or the connection is closing)."""
        while not self.closing and (self.sender_waiting or self.outbound_bytes > target):
            self.drained.clear()
            await self.drained.wait()

    def _abort(self, code: int, reason: str, label: str) -> None:
        self.close_reason = label
        self.closing = True
        self.outbound.clear()
        self.outbound_bytes = 0
        self.wakeup.set()
        self.drained.set()
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
        self.drained.set()

    def _write(self, batch: list[bytes]) -> None:
        write_text_frames(self.ws, batch, plain=self.plain_frames)

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
            self.drained.set()

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
        greeting = self.session.greeting()
        if greeting is not None:
            self.reply(greeting)  # NIP-42: the challenge, before anything else
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
            self.negentropy.cancel()
            self.subs.clear()
            self.drained.set()
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
                self.negentropy.spawn(outcome)
            else:
                self.reply(outcome)
                if isinstance(outcome, NegMsg):
                    self.negentropy.expire_later()

    # -- EVENT ------------------------------------------------------------------------------

    async def _store(self, event: Event, raw: bytes) -> None:
        ephemeral = kind_class(event.kind) is KindClass.EPHEMERAL
        if ephemeral and not self.session.policies.admit_event:
            self._broadcast(event, raw)
            return
        await self.in_flight.acquire()
        task = asyncio.create_task(self._commit(event, raw, ephemeral))
        self.writes.add(task)
        task.add_done_callback(self.writes.discard)

    def _broadcast(self, event: Event, raw: bytes) -> None:
        self.index.dispatch(event, raw, time.monotonic())
        self.reply(self.session.broadcast(event))

    async def _commit(self, event: Event, raw: bytes, ephemeral: bool = False) -> None:
        """Run the admit rules (ephemeral events too), then store or broadcast."""
        try:
            policies = self.session.policies
            if policies.admit_event:
                refused = await policies.admit(self.session.conn, event)
                if refused is not None:
                    self.reply(self.session.refused(event, refused))
                    return
            if ephemeral:
                self._broadcast(event, raw)
                return
            status = await self.writer.submit(event, raw.decode())
        except WriterUnavailable:
            self.reply(self.session.store_failed(event))
        else:
            self.reply(self.session.stored(event, status))
        finally:
            self.in_flight.release()

    async def own_writes(self) -> None:
        """Wait for this connection's earlier EVENTs, so a REQ after them sees them."""
        if self.writes:
            await asyncio.gather(*self.writes, return_exceptions=True)

    # -- REQ / CLOSE / COUNT ----------------------------------------------------------------

    def _subscribe(self, sub_id: str, filters: tuple[Filter, ...]) -> None:
        self._unsubscribe(sub_id)
        sub = _Subscription()
        self.subs[sub_id] = sub
        self.index.add(self, sub_id, filters)
        pages: AsyncGenerator[Rows, None] | None = None
        if self.memory is not None and not self.writes:
            # Nothing of this connection's is still being stored, so the memory may answer
            # now, in this turn of the loop, without a task (most REQs end here).
            started = time.monotonic()
            now = int(time.time())
            rows = self.memory.answer_now(filters, now)
            if rows is None:
                pages = self.memory.inner.pages(filters, now, PAGE_EVENTS)
            elif self._answer_now(sub_id, sub, rows, started):
                return
            else:
                pages = answer_pages(rows, PAGE_EVENTS)
        sub.task = task = asyncio.create_task(self._initial(sub_id, sub, filters, pages))
        task.add_done_callback(self._query_done)

    def _answer_now(self, sub_id: str, sub: _Subscription, rows: Rows, started: float) -> bool:
        """Queue ``rows`` and EOSE at once when they fit in the room the client has; False
        (nothing done) when they do not, and the answer must wait for it."""
        size = sum(len(raw) for _id, raw in rows)
        if self.closing or self.outbound_bytes + size > self.answer_buffer:
            return False
        sub.seen_upto = self.tail.known_committed()
        sent: set[bytes] = set()
        if rows:
            self._queue(*self._answer_frames(sub_id, sub, rows, sent))
        self._finish_answer(sub_id, sub, sent, time.monotonic() - started)
        self.session.query_finished()
        return True

    def _query_done(self, _task: object) -> None:
        """A Subscribe's stored query or a Count ended, however (even cancelled unstarted)."""
        self.session.query_finished()

    def _unsubscribe(self, sub_id: str) -> None:
        sub = self.subs.pop(sub_id, None)
        self.index.remove(self, sub_id)
        if sub is not None and sub.task is not None and not sub.task.done():
            sub.task.cancel()

    def _fail(self, sub_id: str, *, timed_out: bool) -> None:
        self.subs.pop(sub_id, None)
        self.index.remove(self, sub_id)
        self.reply(self.session.query_failed(sub_id, timed_out=timed_out))

    async def _initial(
        self,
        sub_id: str,
        sub: _Subscription,
        filters: tuple[Filter, ...],
        answer: AsyncGenerator[Rows, None] | None = None,
    ) -> None:
        """Send the stored answer, read a page at a time from ``answer`` (when the REQ's
        turn already chose where it comes from) or from the store, then EOSE."""
        started = time.monotonic()
        await self.own_writes()
        sub.seen_upto = self.tail.known_committed()
        sent: set[bytes] = set()
        try:
            async with contextlib.aclosing(answer or self._pages(filters)) as pages:
                while True:
                    async with self.db_turns:
                        rows = await anext(pages, None)
                    if rows is None or self.closing:
                        break
                    await self._queue_answer(sub_id, sub, rows, sent)
        except PoolBusy:
            self.metrics.queries_busy.inc()
            self.subs.pop(sub_id, None)
            self.index.remove(self, sub_id)
            self.reply(self.session.query_busy(sub_id))
            return
        except (TimeoutError, asyncpg.QueryCanceledError):
            self.metrics.queries_cancelled.inc()
            self._fail(sub_id, timed_out=True)
            return
        except DATABASE_ERRORS:
            log.exception("conn %d: query failed", self.conn_id)
            self._fail(sub_id, timed_out=False)
            return
        self._finish_answer(sub_id, sub, sent, time.monotonic() - started)

    def _finish_answer(
        self, sub_id: str, sub: _Subscription, sent: set[bytes], seconds: float
    ) -> None:
        """EOSE, then the live events held back meanwhile that the answer did not hold."""
        if not self.closing:
            self.metrics.sent[b"EOSE"].inc()
            self._queue(encode_eose(sub_id))
        self.metrics.req_events.inc(len(sent))
        self.metrics.req_eose.observe(seconds)
        held, sub.buffer = sub.buffer or [], None
        for event_id, data in held:
            if bytes.fromhex(event_id) not in sent:
                self._send_event(data)

    def _pages(self, filters: Sequence[Filter]) -> AsyncGenerator[Rows, None]:
        return self.store.pages(filters, int(time.time()), PAGE_EVENTS)

    async def _queue_answer(
        self, sub_id: str, sub: _Subscription, rows: Rows, sent: set[bytes]
    ) -> None:
        """Queue one page of a stored answer in chunks of about ``answer_buffer_bytes``, each
        once the client has room for it (at once for a small answer)."""
        if self.closing:
            return
        frames = self._answer_frames(sub_id, sub, rows, sent)
        chunk: list[bytes] = []
        chunk_bytes = 0
        for frame in frames:
            chunk.append(frame)
            chunk_bytes += len(frame)
            if chunk_bytes >= self.answer_buffer:
                await self._queue_chunk(chunk, chunk_bytes)
                chunk, chunk_bytes = [], 0
        if chunk:
            await self._queue_chunk(chunk, chunk_bytes)

    def _answer_frames(
        self, sub_id: str, sub: _Subscription, rows: Rows, sent: set[bytes]
    ) -> list[bytes]:
        """One page of a stored answer framed, its ids noted (``sent``, and ``answered`` for
        the live events held back meanwhile)."""
        ids = [event_id for event_id, _raw in rows]
        sent.update(ids)
        sub.answered |= self.tail.undispatched_local(event_id.hex() for event_id in ids)
        frames = encode_events(sub_id, (raw for _event_id, raw in rows))
        self.metrics.sent[b"EVENT"].inc(len(frames))
        return frames

    async def _queue_chunk(self, chunk: list[bytes], size: int) -> None:
        """Queue part of a stored answer once the client has room for it: at most
        ``answer_buffer_bytes`` queued before it (nothing, if it would otherwise pass
        ``max_pending_outbound_bytes``) and the socket taking data."""
        target = self.answer_buffer
        if self.outbound_bytes + size > self.config.relay.max_pending_outbound_bytes:
            target = 0
        await self._room(target)
        if not self.closing:
            self._queue(*chunk)
            unsent = self.outbound_bytes + self.ws.transport.get_write_buffer_size()
            self.peak_answer_unsent = max(self.peak_answer_unsent, unsent)

    def _spawn_count(self, sub_id: str, filters: tuple[Filter, ...]) -> None:
        task = asyncio.create_task(self._count(sub_id, filters))
        self.counts.add(task)
        task.add_done_callback(self.counts.discard)
        task.add_done_callback(self._query_done)

    async def _count(self, sub_id: str, filters: tuple[Filter, ...]) -> None:
        started = time.monotonic()
        await self.own_writes()
        try:
            async with self.db_turns:
                total = await self.store.count(filters, int(time.time()))
        except PoolBusy:
            self.metrics.queries_busy.inc()
            self.reply(self.session.count_busy(sub_id))
            return
        except (TimeoutError, asyncpg.QueryCanceledError):
            self.metrics.queries_cancelled.inc()
            self.reply(self.session.count_failed(sub_id, timed_out=True))
            return
        except DATABASE_ERRORS:
            log.exception("conn %d: count failed", self.conn_id)
            self.reply(self.session.count_failed(sub_id, timed_out=False))
            return
        self.metrics.count_seconds.observe(time.monotonic() - started)
        self.reply(self.session.counted(sub_id, total))
