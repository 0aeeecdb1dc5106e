"""The WebSocket server stage: accepts clients on the public port and runs a
:class:`~relay.server.connection.Connection` for each; NIP-11 on the same port."""

from __future__ import annotations

import asyncio
import collections
import http
import itertools
import logging
import ssl

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from relay.config import Config
from relay.nostr.filters import DEFAULT_RULES, FilterRules
from relay.nostr.policy import Policies
from relay.server.connection import Connection
from relay.server.live import LiveIndex, LogTail
from relay.server.metrics import Metrics
from relay.server.nip11 import make_process_request
from relay.server.proxies import TrustedProxies
from relay.server.writer import Writer
from relay.storage.cachedstore import PagedStore

__all__ = ["WebSocketServer", "tls_context"]

log = logging.getLogger(__name__)

# websockets' own frame limit sits above the relay's message limit, so a message a little
# too large gets a NOTICE/OK/CLOSED; one grossly too large closes with 1009 (RFC 6455).
_FRAME_SLACK = 2
_SHUTDOWN_WRITES_SECONDS = 10.0


class WebSocketServer:
    """A stage: the listening socket and the open connections."""

    name = "websocket server"

    def __init__(
        self,
        config: Config,
        *,
        queries: PagedStore,
        writer: Writer,
        live: LiveIndex,
        tail: LogTail,
        metrics: Metrics,
        policies: Policies,
        rules: FilterRules = DEFAULT_RULES,
    ) -> None:
        self.config = config
        self.rules = rules
        """Multi-letter tag names and search answered in filters (NIP-11 lists 50 with it)."""
        self.queries = queries
        self.writer = writer
        self.live = live
        self.tail = tail
        self.metrics = metrics
        self.policies = policies
        self.connections: set[Connection] = set()
        self._ids = itertools.count(1)
        self._server: Server | None = None
        self._stopping = False
        self.proxies = TrustedProxies(config.relay.trusted_proxies)
        self.max_per_ip = config.relay.rate_limits.max_connections_per_ip
        self.per_ip: collections.Counter[str] = collections.Counter()
        """Open WebSocket connections by client address (counted from the upgrade)."""
        self.refused: collections.Counter[tuple[str, str]] = collections.Counter()
        """Upgrades refused, by (verb, reason), read by the metrics."""
        self._nip11 = make_process_request(config, self.policies, rules)

    @property
    def port(self) -> int:
        assert self._server is not None
        sockets = list(self._server.sockets)
        return int(sockets[0].getsockname()[1])

    async def start(self) -> None:
        cfg = self.config
        self._server = await serve(
            self._serve_connection,
            cfg.relay.host,
            cfg.relay.port,
            ssl=tls_context(cfg.relay.tls_cert, cfg.relay.tls_key),
            reuse_port=cfg.relay.workers > 1,
            process_request=self._process_request,
            max_size=cfg.relay.limits.max_message_bytes * _FRAME_SLACK,
            compression="deflate" if cfg.relay.compression else None,
            ping_interval=30,
            ping_timeout=60,
            close_timeout=2,
            server_header="fitrelay",
        )
        scheme = "wss" if cfg.relay.tls_cert else "ws"
        log.info("listening on %s://%s:%d", scheme, cfg.relay.host, self.port)

    async def run(self) -> None:
        """Connections are served by the server's own tasks."""

    def client_ip(self, ws: ServerConnection, headers: Headers) -> str:
        """The client's address: the peer, or whom a trusted proxy forwards for."""
        remote = ws.remote_address
        return self.proxies.client(str(remote[0]) if remote else "", headers)

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        """NIP-11 for plain GETs; for upgrades, the cap on connections per address."""
        if "websocket" not in request.headers.get("Upgrade", "").lower():
            return self._nip11(ws, request)
        if not self.max_per_ip:
            return None
        ip = self.client_ip(ws, request.headers)
        if self.per_ip[ip] >= self.max_per_ip:
            self.refused["connect", "ip_connections"] += 1
            log.debug("refused a connection from %s: %d open", ip, self.per_ip[ip])
            body = f"rate-limited: at most {self.max_per_ip} connections per address\n".encode()
            return Response(
                http.HTTPStatus.TOO_MANY_REQUESTS.value,
                http.HTTPStatus.TOO_MANY_REQUESTS.phrase,
                Headers(
                    [
                        ("Content-Type", "text/plain; charset=utf-8"),
                        ("Content-Length", str(len(body))),
                        ("Retry-After", "10"),
                    ]
                ),
                body,
            )
        # Counted from the upgrade until the TCP connection is gone, whatever happens.
        self.per_ip[ip] += 1
        ws.connection_lost_waiter.add_done_callback(lambda _: self._gone(ip))
        return None

    def _gone(self, ip: str) -> None:
        self.per_ip[ip] -= 1
        if self.per_ip[ip] <= 0:
            del self.per_ip[ip]

    async def _serve_connection(self, ws: ServerConnection) -> None:
        ip = self.client_ip(ws, ws.request.headers if ws.request is not None else Headers())
        conn = Connection(
            ws,
            self.config,
            self.queries,
            self.writer,
            self.live,
            next(self._ids),
            self.metrics,
            self.tail,
            self.policies,
            ip=ip,
            rules=self.rules,
        )
        self.connections.add(conn)
        self.metrics.connections_opened.inc()
        peer = ws.remote_address
        via = f" via {peer[0]}" if peer and str(peer[0]) != ip else ""
        log.info("conn %d: open from %s%s", conn.conn_id, ip, via)
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)
            reason = conn.close_reason or _close_reason(ws.close_code, self._stopping)
            self.metrics.connections_closed.labels(reason).inc()
            log.info("conn %d: closed (%s, code %s)", conn.conn_id, reason, ws.close_code)

    async def stop(self) -> None:
        """Stop accepting; answer the EVENTs already received; close every connection."""
        self._stopping = True
        if self._server is None:
            return
        self._server.close(close_connections=False)
        # Events already received are committed and answered before the close.
        pending = [task for conn in self.connections for task in conn.writes]
        if pending:
            await asyncio.wait(pending, timeout=_SHUTDOWN_WRITES_SECONDS)
        await asyncio.gather(
            *(conn.ws.close(1001, "relay shutting down") for conn in list(self.connections))
        )
        await self._server.wait_closed()


def _close_reason(code: int | None, stopping: bool) -> str:
    if stopping:
        return "shutdown"
    if code in (1002, 1007, 1009):
        return "protocol_error"
    if code == 1011:
        return "server_error"
    return "client"


def tls_context(cert: str, key: str) -> ssl.SSLContext | None:
    """A server TLS context for wss://, or None when no certificate is configured."""
    if not cert:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context
