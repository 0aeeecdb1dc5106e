"""Idle connections: the relay's resident memory before and after opening N WebSockets."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection

from bench.common import gather_limited, open_ws, rss_kb

__all__ = ["IdleResult", "run_idle"]


@dataclass
class IdleResult:
    requested: int
    opened: int = 0
    failed: int = 0
    open_seconds: float = 0.0
    rss_before_kb: int = 0
    rss_after_kb: int = 0
    first_error: str | None = None

    def summary(self) -> dict[str, Any]:
        delta = self.rss_after_kb - self.rss_before_kb
        return {
            "requested": self.requested,
            "opened": self.opened,
            "failed": self.failed,
            "open_seconds": round(self.open_seconds, 2),
            "rss_before_mb": round(self.rss_before_kb / 1024, 1),
            "rss_after_mb": round(self.rss_after_kb / 1024, 1),
            "kb_per_connection": round(delta / self.opened, 2) if self.opened else None,
            "first_error": self.first_error,
        }


async def run_idle(url: str, count: int, pid: int, *, settle: float = 3.0) -> IdleResult:
    """Open ``count`` connections (50 handshakes at a time), let the relay settle, read the
    RSS of process ``pid`` and its children, then close them all."""
    result = IdleResult(requested=count)
    await asyncio.sleep(settle)
    result.rss_before_kb = rss_kb(pid)
    started = time.perf_counter()

    def opener() -> Awaitable[ClientConnection]:
        return open_ws(url)

    opened = await gather_limited([opener] * count, 50)
    result.open_seconds = time.perf_counter() - started
    sockets = [ws for ws in opened if not isinstance(ws, BaseException)]
    errors = [ws for ws in opened if isinstance(ws, BaseException)]
    result.opened, result.failed = len(sockets), len(errors)
    if errors:
        result.first_error = repr(errors[0])[:200]
    await asyncio.sleep(settle)
    result.rss_after_kb = rss_kb(pid)
    await gather_limited([functools.partial(ws.close) for ws in sockets], 200)
    return result
