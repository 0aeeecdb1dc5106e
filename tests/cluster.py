"""A throwaway PostgreSQL cluster of a test's own, which the test may crash and restart.

Built on :class:`relay.storage.embedded.EmbeddedPostgres` (so it runs as an unprivileged
account under root too) in a temporary directory; the server listens on a Unix socket in
that directory, whose path stays the same across restarts, so one DSN reaches every
incarnation. Synchronous: call it through ``asyncio.to_thread`` from async tests.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
from collections.abc import Iterator
from pathlib import Path

from relay.storage.embedded import EmbeddedPostgres

__all__ = ["Cluster", "own_cluster"]


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._server = EmbeddedPostgres(root)
        self.dsn = ""

    @property
    def directory(self) -> Path:
        return self.root / "pg"

    def start(self) -> str:
        self.dsn = self._server.start()
        return self.dsn

    def postmaster_pid(self) -> int:
        return int((self.directory / "postmaster.pid").read_text().split()[0])

    def crash(self, timeout: float = 30.0) -> None:
        """Stop the server as ``pg_ctl stop -m immediate`` does (SIGQUIT to the postmaster:
        no checkpoint, every backend killed, crash recovery on the next start)."""
        pid = self.postmaster_pid()
        pidfd = os.pidfd_open(pid)
        try:
            os.kill(pid, signal.SIGQUIT)
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            if not poller.poll(int(timeout * 1000)):
                raise TimeoutError(f"postmaster {pid} did not exit")
        finally:
            os.close(pidfd)
        self._server = EmbeddedPostgres(self.root)  # the old one still thinks it runs

    def stop(self) -> None:
        self._server.stop()

    def allow_password(self, role: str) -> None:
        """Make ``role`` log in with a password (SCRAM), before the trust rules apply."""
        hba = self.directory / "pg_hba.conf"
        hba.write_text(f"local all {role} scram-sha-256\n" + hba.read_text())


@contextlib.contextmanager
def own_cluster(root: Path) -> Iterator[Cluster]:
    cluster = Cluster(root)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
