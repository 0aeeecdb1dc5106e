"""The OS account PostgreSQL programs run as, and the permissions it needs.

PostgreSQL refuses to run as root. When the effective uid is 0, every PostgreSQL program runs
as the unprivileged system account :data:`SERVICE_USER` (created with ``useradd`` if
missing); otherwise as the current user, and no permissions are touched.
"""

from __future__ import annotations

import logging
import os
import pwd
import shlex
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from relay.storage.embedded.errors import EmbeddedPostgresError

__all__ = ["SERVICE_USER", "Account", "ensure_traversable", "needed_bits", "resolve_account"]

SERVICE_USER: Final = "fitrelay"
"""The unprivileged account PostgreSQL runs as when the relay runs as root."""


@dataclass(frozen=True)
class Account:
    """The OS account PostgreSQL programs run as."""

    name: str
    uid: int
    gid: int
    switch: bool
    """True when subprocesses must switch to this account (we are root)."""


def resolve_account(logger: logging.Logger) -> Account:
    """The current user, or :data:`SERVICE_USER` (created if missing) when we are root."""
    uid = os.geteuid()
    if uid != 0:
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        return Account(name=name, uid=uid, gid=os.getegid(), switch=False)
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        entry = _create_service_user(logger)
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise EmbeddedPostgresError(
            f"account {SERVICE_USER!r} has uid/gid 0; PostgreSQL needs an unprivileged account"
        )
    return Account(name=SERVICE_USER, uid=entry.pw_uid, gid=entry.pw_gid, switch=True)


def _create_service_user(logger: logging.Logger) -> pwd.struct_passwd:
    shell = "/usr/sbin/nologin" if Path("/usr/sbin/nologin").exists() else "/bin/false"
    command = ["useradd", "--system", "--no-create-home", "--shell", shell, SERVICE_USER]
    logger.info(
        "running as root: creating system account %r for PostgreSQL (%s)",
        SERVICE_USER,
        shlex.join(command),
    )
    try:
        result = subprocess.run(
            command, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
        )
    except FileNotFoundError as exc:
        raise EmbeddedPostgresError(
            f"running as root and account {SERVICE_USER!r} does not exist, and useradd is "
            "not available to create it; create it, or run the relay as a non-root user"
        ) from exc
    try:
        return pwd.getpwnam(SERVICE_USER)  # also covers a concurrent creation (exit 9)
    except KeyError:
        raise EmbeddedPostgresError(
            f"could not create account {SERVICE_USER!r} (useradd exit {result.returncode}): "
            f"{result.stderr.strip()}"
        ) from None


def needed_bits(st: os.stat_result, account: Account, rwx: int) -> int:
    """The mode bits (of ``rwx`` in 0o7 form) missing for ``account``, in the class it falls in."""
    if st.st_uid == account.uid:
        shift = 6
    elif st.st_gid == account.gid:
        shift = 3
    else:
        shift = 0
    return (rwx << shift) & ~st.st_mode & 0o777


def ensure_traversable(path: Path, account: Account, logger: logging.Logger) -> None:
    """Grant ``account`` search permission on ``path`` and each of its ancestors."""
    for directory in (path, *path.parents):
        st = directory.stat()
        missing = needed_bits(st, account, 0o1)
        if missing:
            directory.chmod(stat.S_IMODE(st.st_mode) | missing)
            logger.warning(
                "granted search permission (mode %o -> %o) on %s so that %s can reach %s",
                stat.S_IMODE(st.st_mode),
                stat.S_IMODE(st.st_mode) | missing,
                directory,
                account.name,
                path,
            )
