"""Locks on files that last exactly as long as the process holding them (``flock``): a process
killed with SIGKILL lets go of them, with nothing left to clean up.

The embedded PostgreSQL is shared through them. Every process using the server holds
``<data_dir>/pg.users`` shared, and the last one to let go of it stops the server
(:class:`~relay.storage.embedded.EmbeddedPostgres`); ``fitrelay serve`` holds
``serve-<port>.lock`` exclusively, so a second relay on the same data directory and port is
refused before it touches the database.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

__all__ = ["FileLock", "others_hold"]


class FileLock:
    """An ``flock`` on one file, held from :meth:`acquire` until :meth:`release` or exit.

    Locks of two instances conflict even within one process (each opens the file anew).
    The descriptor is close-on-exec, so no child process (a server started by ``pg_ctl``)
    can keep the lock alive.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, *, shared: bool = False, wait: bool = True) -> bool:
        """Take the lock; False, without it, when ``wait`` is off and another holder conflicts."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already locked by this instance")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fd, mode if wait else mode | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def record_pid(self) -> None:
        """Write this process's pid into the file (for :meth:`holder_pid`); needs the lock."""
        if self._fd is None:
            raise RuntimeError(f"{self.path} is not locked by this instance")
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def holder_pid(self) -> int | None:
        """The pid the holder recorded, if any."""
        with contextlib.suppress(OSError, ValueError):
            return int(self.path.read_text().strip())
        return None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def others_hold(path: Path) -> bool:
    """Whether any other holder (shared or not) has a lock on ``path`` now."""
    probe = FileLock(path)
    if probe.acquire(wait=False):
        probe.release()
        return False
    return True
