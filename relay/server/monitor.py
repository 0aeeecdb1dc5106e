"""The operators' HTTP endpoint: ``/metrics`` (Prometheus text), ``/healthz`` (the process
answers) and ``/readyz`` (the process can do its job). Separate from the WebSocket port and
bound to localhost by default, so it is not public unless an operator makes it so."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from relay.config import parse_listen
from relay.server.metrics import Metrics
from relay.storage.failures import DATABASE_ERRORS
from relay.storage.migrate import applied_migrations, available_migrations

__all__ = ["MonitorServer", "database_problems"]

log = logging.getLogger(__name__)

Readiness = Callable[[], Awaitable[list[str]]]
"""Returns the reasons the process is not ready (empty: ready)."""

_MAX_REQUEST = 8192


class MonitorServer:
    """A stage: a small HTTP/1.1 server (GET and HEAD only, one request per connection)."""

    name = "monitor"

    def __init__(self, metrics: Metrics, readiness: Readiness, listen: str) -> None:
        self.metrics = metrics
        self.readiness = readiness
        self.host, self.requested_port = parse_listen(listen)
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.requested_port)
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)

    async def run(self) -> None:
        """Requests are served by the server's own tasks."""

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
            method, path = _request_line(head)
            status, ctype, body = await self._answer(method, path)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            )
            if method != "HEAD":
                writer.write(body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _answer(self, method: str, path: str) -> tuple[str, str, bytes]:
        text = "text/plain; charset=utf-8"
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", text, b"only GET and HEAD\n"
        route = path.split("?", 1)[0]
        if route == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self.metrics.registry)
        if route == "/healthz":
            return "200 OK", text, b"ok\n"
        if route == "/readyz":
            problems = await self.readiness()
            if problems:
                return "503 Service Unavailable", text, ("\n".join(problems) + "\n").encode()
            return "200 OK", text, b"ready\n"
        return "404 Not Found", text, b"try /metrics, /healthz or /readyz\n"


def _request_line(head: bytes) -> tuple[str, str]:
    line = head[:_MAX_REQUEST].split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split()
    if len(parts) != 3:
        return "", ""
    return parts[0], parts[1]


async def database_problems(
    pool: asyncpg.Pool | None, *, indexer_lag: float | None, max_lag: float
) -> list[str]:
    """Readiness: the database answers within 2 s, every migration is applied, and the
    indexer (when this process runs one) is not further behind than ``max_lag``."""
    if pool is None:
        return ["database: not connected yet"]
    try:
        async with asyncio.timeout(2):
            async with pool.acquire() as conn:
                applied = set(await applied_migrations(conn))
    except DATABASE_ERRORS as exc:
        return [f"database: {type(exc).__name__}: {exc}".rstrip(": ")]
    problems = []
    missing = [name for name, _ in available_migrations() if name not in applied]
    if missing:
        problems.append(f"migrations not applied: {', '.join(missing)}")
    if indexer_lag is not None and indexer_lag > max_lag:
        problems.append(f"indexer: {indexer_lag:.0f} s behind the log (limit {max_lag:.0f} s)")
    return problems
