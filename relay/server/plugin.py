"""A strfry-compatible write-policy plugin: one long-running subprocess, asked about every
event before the writer stores it.

The relay writes one JSON object per line to the plugin's stdin::

    {"type": "new", "event": {...}, "receivedAt": 1700000000, "sourceType": "IP4",
     "sourceInfo": "203.0.113.7", "authed": "<pubkey, when the client authenticated>"}

and reads one line per event from its stdout: ``{"id": "<event id>", "action": "accept" |
"reject" | "shadowReject", "msg": "..."}``. Answers are matched to questions by id, so the
plugin may answer out of order. A reject's ``msg`` is the OK message (``blocked:`` is put in
front unless it starts with a NIP-01 prefix); ``shadowReject`` answers OK true and stores
nothing. The plugin's stderr is the relay's.

The stage keeps the process running: when it exits it is started again after a pause that
doubles from 0.1 s to 5 s (back to 0.1 s once a process has lived 10 s). An event the plugin
does not answer within ``timeout_ms`` (it is down, restarting or slow) is refused with
``error:`` or accepted, as ``on_failure`` says.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import shlex
import time
from collections.abc import Callable

import msgspec

from relay.config import WritePolicyConfig
from relay.nostr.errors import PREFIXES, NostrError
from relay.nostr.event import Event
from relay.nostr.policy import ConnInfo, ShadowRejected

__all__ = ["WritePolicyPlugin"]

log = logging.getLogger(__name__)

_FIRST_PAUSE = 0.1
_LONGEST_PAUSE = 5.0
_HEALTHY_SECONDS = 10.0
_STOP_SECONDS = 2.0
_LINE_LIMIT = 1 << 20


class _Answer(msgspec.Struct):
    id: str
    action: str
    msg: str = ""


class _PluginDown(Exception):
    """The process exited with this event unanswered."""


_decode_answer = msgspec.json.Decoder(_Answer)
_FAILED = NostrError("error", "the write policy could not decide; try again")


def _refusal(msg: str) -> NostrError:
    prefix, sep, reason = msg.partition(":")
    for known in PREFIXES:
        if sep and prefix == known:
            return NostrError(known, reason.strip())
    return NostrError("blocked", msg or "refused by the write policy")


class WritePolicyPlugin:
    """A stage, and an admit rule (:meth:`admit`)."""

    name = "write policy plugin"
    grace = _STOP_SECONDS * 2

    def __init__(self, config: WritePolicyConfig, clock: Callable[[], float] = time.time) -> None:
        self.argv = shlex.split(config.plugin)
        self.timeout = config.timeout_ms / 1000
        self.accept_on_failure = config.on_failure == "accept"
        self.clock = clock
        self.process: asyncio.subprocess.Process | None = None
        self.ready = asyncio.Event()
        self.stopping = asyncio.Event()
        self.pending: dict[str, collections.deque[asyncio.Future[_Answer]]] = {}
        self.refused: collections.Counter[tuple[str, str]] = collections.Counter()
        """Refusals by (``EVENT``, reason), read by the metrics."""
        self.failures: collections.Counter[str] = collections.Counter()
        """Events the plugin did not decide, by cause (``timeout``, ``down``, ``bad_answer``)."""
        self.restarts = 0

    # -- the stage --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the plugin; a command that cannot be run stops the relay from starting."""
        await self._spawn()

    async def run(self) -> None:
        pause = _FIRST_PAUSE
        while True:
            process = self.process
            assert process is not None
            started = time.monotonic()
            await self._serve(process)
            self.ready.clear()
            self._fail_pending()
            if self.stopping.is_set():
                return
            log.warning("write policy plugin exited with %s; restarting", process.returncode)
            if time.monotonic() - started >= _HEALTHY_SECONDS:
                pause = _FIRST_PAUSE
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), pause)
                return
            pause = min(pause * 2, _LONGEST_PAUSE)
            try:
                await self._spawn()
            except OSError:
                log.exception("write policy plugin could not be started")
                continue
            self.restarts += 1

    async def stop(self) -> None:
        """Close the plugin's stdin (it should exit), then kill it if it does not."""
        self.stopping.set()
        process = self.process
        if process is None or process.returncode is not None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            async with asyncio.timeout(_STOP_SECONDS):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()

    async def _spawn(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=_LINE_LIMIT,
        )
        log.info("write policy plugin started (pid %d)", self.process.pid)
        self.ready.set()

    async def _serve(self, process: asyncio.subprocess.Process) -> None:
        """Match the plugin's answers to waiting events until its stdout closes."""
        assert process.stdout is not None
        while True:
            try:
                line = await process.stdout.readline()
            except ValueError:  # a line over the limit
                log.warning("write policy plugin: answer too long, skipped")
                continue
            if not line:
                break
            try:
                answer = _decode_answer.decode(line)
            except msgspec.DecodeError:
                log.warning("write policy plugin: not an answer: %.200r", line)
                continue
            waiting = self.pending.get(answer.id)
            if waiting:
                future = waiting.popleft()
                if not waiting:
                    del self.pending[answer.id]
                if not future.done():
                    future.set_result(answer)
        await process.wait()

    def _fail_pending(self) -> None:
        pending, self.pending = self.pending, {}
        for waiting in pending.values():
            for future in waiting:
                if not future.done():
                    future.set_exception(_PluginDown())

    # -- the rule ---------------------------------------------------------------------------

    def _request(self, conn: ConnInfo, event: Event) -> bytes:
        request: dict[str, object] = {
            "type": "new",
            "event": event,
            "receivedAt": int(self.clock()),
            "sourceType": "IP6" if ":" in conn.ip else "IP4",
            "sourceInfo": conn.ip,
        }
        if conn.authed:
            request["authed"] = min(conn.authed)
        return msgspec.json.encode(request) + b"\n"

    async def admit(self, conn: ConnInfo, event: Event) -> NostrError | None:
        """Ask the plugin about ``event``; its answer, or ``on_failure``'s."""
        future: asyncio.Future[_Answer] | None = None
        try:
            async with asyncio.timeout(self.timeout):
                await self.ready.wait()
                process = self.process
                assert process is not None and process.stdin is not None
                process.stdin.write(self._request(conn, event))
                future = asyncio.get_running_loop().create_future()
                self.pending.setdefault(event.id, collections.deque()).append(future)
                await process.stdin.drain()
                answer = await future
        except TimeoutError:
            return self._failed("timeout")
        except (_PluginDown, ConnectionError):
            return self._failed("down")
        finally:
            if future is not None and not future.done():
                future.cancel()
                self._forget(event.id, future)
        if answer.action == "accept":
            return None
        if answer.action == "shadowReject":
            self.refused["EVENT", "plugin_shadow_reject"] += 1
            return ShadowRejected()
        if answer.action != "reject":
            log.warning("write policy plugin: unknown action %.50r", answer.action)
            return self._failed("bad_answer")
        self.refused["EVENT", "plugin_reject"] += 1
        return _refusal(answer.msg)

    def _forget(self, event_id: str, future: asyncio.Future[_Answer]) -> None:
        waiting = self.pending.get(event_id)
        if waiting is not None:
            with contextlib.suppress(ValueError):
                waiting.remove(future)
            if not waiting:
                del self.pending[event_id]

    def _failed(self, cause: str) -> NostrError | None:
        self.failures[cause] += 1
        if self.accept_on_failure:
            return None
        self.refused["EVENT", "plugin_failure"] += 1
        return _FAILED
