"""``postmaster.pid`` and the process it names: is a server running on the cluster, and
waiting for it to exit."""

from __future__ import annotations

import os
import select
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PidFile", "is_postmaster_of", "read_pidfile", "wait_for_exit"]


@dataclass(frozen=True)
class PidFile:
    """The interesting lines of ``postmaster.pid`` (0 as pid when unparsable)."""

    pid: int
    socket_dir: str
    status: str


def read_pidfile(cluster: Path) -> PidFile | None:
    """The cluster's ``postmaster.pid``, or None when there is none."""
    try:
        lines = (cluster / "postmaster.pid").read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return None
    try:
        pid = int(lines[0])
    except (IndexError, ValueError):
        pid = 0
    socket_dir = lines[4].strip() if len(lines) > 4 else ""
    status = lines[7].strip() if len(lines) > 7 else ""
    return PidFile(pid=pid, socket_dir=socket_dir, status=status)


def is_postmaster_of(pid: int, cluster: Path) -> bool:
    """Whether ``pid`` is a live (non-zombie) postgres process whose cwd is ``cluster``."""
    if pid <= 0:
        return False
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").is_dir():  # no procfs: fall back to "is the pid alive"
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):  # gone, or another user's process
            return False
        return True
    try:
        comm = (proc / "comm").read_text().strip()
        cwd = os.stat(proc / "cwd")  # fails for exited (zombie) processes
        here = os.stat(cluster)
    except (FileNotFoundError, PermissionError):
        # Gone, or another user's process: ours run as the cluster owner, and root sees all.
        return False
    return comm == "postgres" and (cwd.st_dev, cwd.st_ino) == (here.st_dev, here.st_ino)


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Wait until process ``pid`` has exited; True if it did within ``timeout`` seconds."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except OSError:  # no pidfd support: poll procfs
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (FileNotFoundError, IndexError):
                return True
            if state in ("Z", "X"):
                return True
            time.sleep(0.05)
        return False
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        return bool(poller.poll(timeout * 1000))
    finally:
        os.close(pidfd)
