"""What a failing or vanished database raises, named once for every retry loop and answer.

asyncpg reports a connection cut in the middle of an operation in several ways: an
``OSError`` from the socket, a ``PostgresError`` the server sent before it went (``57P01
terminating connection due to administrator command``), an ``InterfaceError`` (the
connection is closed), or an ``InternalClientError`` when the next statement finds the
protocol still in the state of the one that was cut. Each means "retry on a new connection",
never "stop".
"""

from __future__ import annotations

import asyncpg

__all__ = ["DATABASE_ERRORS"]

DATABASE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)
