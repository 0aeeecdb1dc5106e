"""Where the server's Unix socket lives: the cluster directory when its path is short enough
for ``sockaddr_un``, else a private directory under /tmp recorded in ``<data_dir>/pg.sockdir``
and reused on the next start."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Final

from relay.storage.embedded.account import Account
from relay.storage.embedded.cluster import check_path

__all__ = ["PORT", "guc_list_item", "prepare_socket_dir"]

PORT: Final = 5432
_SOCKET_NAME: Final = f".s.PGSQL.{PORT}"
# sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
_MAX_SOCKET_PATH: Final = 107
_SOCKET_FALLBACK_PARENT: Final = Path("/tmp")


def _socket_path_ok(socket_dir: Path) -> bool:
    return len(os.fsencode(socket_dir / _SOCKET_NAME)) <= _MAX_SOCKET_PATH


def guc_list_item(path: Path) -> str:
    """Quote ``path`` for a comma-separated directory list setting, if it needs it."""
    text = str(path)
    return f'"{text}"' if re.search(r"[\s,]", text) else text


def prepare_socket_dir(
    data_dir: Path, cluster: Path, account: Account, logger: logging.Logger
) -> Path:
    """Pick the socket directory: the cluster dir if short enough, else a private /tmp dir.

    Only called when no server runs on the cluster, so stale socket files are removed.
    """
    if _socket_path_ok(cluster):
        socket_dir = cluster
    else:
        socket_dir = _fallback_socket_dir(data_dir, account, logger)
    for name in (_SOCKET_NAME, _SOCKET_NAME + ".lock"):
        with contextlib.suppress(FileNotFoundError):
            (socket_dir / name).unlink()
    return socket_dir


def _fallback_socket_dir(data_dir: Path, account: Account, logger: logging.Logger) -> Path:
    record = data_dir / "pg.sockdir"
    try:
        recorded = Path(record.read_text().strip())
    except FileNotFoundError:
        recorded = None
    if recorded is not None:
        try:
            st = recorded.lstat()
        except FileNotFoundError:
            pass
        else:
            if (
                recorded.parent == _SOCKET_FALLBACK_PARENT
                and stat.S_ISDIR(st.st_mode)
                and st.st_uid == account.uid
                and stat.S_IMODE(st.st_mode) == 0o700
                and _socket_path_ok(recorded)
            ):
                return recorded
            logger.warning("not reusing socket directory %s (wrong type, owner or mode)", recorded)
    socket_dir = Path(tempfile.mkdtemp(prefix="fitrelay-pg-", dir=_SOCKET_FALLBACK_PARENT))
    if account.switch:
        os.chown(socket_dir, account.uid, account.gid)
    check_path(socket_dir)
    scratch = record.with_name(record.name + ".tmp")
    scratch.write_text(f"{socket_dir}\n")
    scratch.replace(record)
    logger.info(
        "the data directory path is too long for a Unix socket; using %s (recorded in %s)",
        socket_dir,
        record,
    )
    return socket_dir
