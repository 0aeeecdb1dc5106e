"""What went wrong, in one line an operator can act on: the command line's answer to the
failures it expects (the database unreachable or refusing us, a port taken, an extra not
installed), instead of a traceback.

:func:`describe` returns ``None`` for anything else: an unexpected exception is a bug, and
its traceback is what a bug report needs.
"""

from __future__ import annotations

import errno
import socket

import asyncpg

from relay.stages import StageFailed
from relay.storage.postmaster import EmbeddedPostgresError

__all__ = ["describe"]

_FIX_DSN = "check db.dsn, FITRELAY_DB_DSN or --db-dsn"


def describe(exc: BaseException) -> str | None:
    """One line saying what failed and what to look at, or None for an unexpected error."""
    if isinstance(exc, StageFailed):
        return str(exc)
    if isinstance(exc, asyncpg.InvalidPasswordError):
        return f"database authentication failed: {exc} ({_FIX_DSN})"
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return f"cannot connect to the database: {exc} (create it, or {_FIX_DSN})"
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        return f"cannot connect to the database: {exc} ({_FIX_DSN})"
    if isinstance(exc, asyncpg.CannotConnectNowError):
        return f"the database is not accepting connections: {exc}"
    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError):
        return f"database error: {_one_line(str(exc))}"
    if isinstance(exc, EmbeddedPostgresError):
        return f"embedded PostgreSQL: {_one_line(str(exc))}"
    if isinstance(exc, OSError):
        return _os_error(exc)
    if isinstance(exc, TimeoutError):
        return f"cannot connect to the database: no answer in time ({_FIX_DSN})"
    cause = exc.__cause__
    if isinstance(cause, ImportError) and not isinstance(exc, ImportError):
        return _one_line(str(exc))  # e.g. an optional extra that is not installed
    return None


def _os_error(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"cannot listen: {_one_line(exc.strerror or str(exc))}"
    if exc.errno == errno.EADDRNOTAVAIL and "bind" in str(exc):
        return f"cannot listen: {_one_line(exc.strerror or str(exc))}"
    if isinstance(exc, socket.gaierror):
        return f"cannot connect to the database: unknown host ({exc.strerror}; {_FIX_DSN})"
    if isinstance(exc, ConnectionRefusedError) or "Connect call failed" in str(exc):
        return f"cannot connect to the database: connection refused (is it running? {_FIX_DSN})"
    if exc.errno == errno.ENOENT and exc.filename is None:
        # A Unix socket that is not there: no server on that directory and port.
        return f"cannot connect to the database: no server at that socket ({_FIX_DSN})"
    return _one_line(str(exc))


def _one_line(text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else text
    return first if len(first) <= 300 else first[:297] + "..."
