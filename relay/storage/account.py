"""The OS account PostgreSQL runs as, and the permissions it needs on the way to its files.

PostgreSQL refuses to run as root: as root, its programs run as the system account
``fitrelay`` (created with ``useradd`` when missing), granted only search permission on the
directories leading to the data and read/execute on the server's install tree.
"""

from __future__ import annotations

import logging
import os
import pwd
import shlex
import stat
import subprocess
from pathlib import Path
from typing import Final

from relay.storage.postmaster import Account, EmbeddedPostgresError, needed_bits

__all__ = [
    "SERVICE_USER",
    "create_service_user",
    "ensure_install_access",
    "ensure_traversable",
    "resolve_account",
]

SERVICE_USER: Final = "fitrelay"
_checked_installs: set[tuple[Path, int]] = set()


def resolve_account(logger: logging.Logger) -> Account:
    """The account PostgreSQL programs run as: this one, or as root the service account."""
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
        entry = create_service_user(logger)
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise EmbeddedPostgresError(
            f"account {SERVICE_USER!r} has uid/gid 0; PostgreSQL needs an unprivileged account"
        )
    return Account(name=SERVICE_USER, uid=entry.pw_uid, gid=entry.pw_gid, switch=True)


def create_service_user(logger: logging.Logger) -> pwd.struct_passwd:
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


def ensure_install_access(install: Path, account: Account, logger: logging.Logger) -> None:
    """Make the wheel's bin/lib/share readable (and bin executable) by ``account``."""
    if (install, account.uid) in _checked_installs:
        return
    ensure_traversable(install, account, logger)
    fixed: list[str] = []
    for sub in ("bin", "lib", "share"):
        for dirpath, _dirnames, filenames in os.walk(install / sub):
            directory = Path(dirpath)
            st = directory.stat()
            missing = needed_bits(st, account, 0o5)
            if missing:
                directory.chmod(stat.S_IMODE(st.st_mode) | missing)
                fixed.append(str(directory))
            for name in filenames:
                path = directory / name
                st = path.lstat()
                if not stat.S_ISREG(st.st_mode):
                    continue
                executable = sub == "bin" or bool(st.st_mode & stat.S_IXUSR)
                missing = needed_bits(st, account, 0o5 if executable else 0o4)
                if missing:
                    path.chmod(stat.S_IMODE(st.st_mode) | missing)
                    fixed.append(str(path))
    if fixed:
        logger.info(
            "granted %s read/execute access to %d PostgreSQL install entries under %s (e.g. %s)",
            account.name,
            len(fixed),
            install,
            ", ".join(fixed[:3]),
        )
    _checked_installs.add((install, account.uid))


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
