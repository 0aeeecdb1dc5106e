"""The cluster directory: created once with ``initdb`` (into a scratch directory renamed into
place), checked against the installed server's major version, owned by the server's account.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import Final

from relay.storage.embedded.account import Account
from relay.storage.embedded.errors import EmbeddedPostgresError
from relay.storage.embedded.install import run

__all__ = ["DB_USER", "check_path", "ensure_cluster"]

DB_USER: Final = "postgres"
"""The cluster's superuser (trust authentication, Unix socket only)."""

_INITDB_TIMEOUT: Final = 300
# pg_ctl embeds paths in a double-quoted ``sh -c`` command line; these would break it.
_UNSAFE_PATH_CHARS: Final = frozenset('"$`\\\n')


def check_path(path: Path) -> None:
    """Refuse a path that pg_ctl's command line cannot carry."""
    bad = sorted(_UNSAFE_PATH_CHARS.intersection(str(path)))
    if bad:
        raise EmbeddedPostgresError(
            f"path {str(path)!r} contains characters pg_ctl cannot handle: {bad!r}"
        )


def _server_major(account: Account, install: Path, logger: logging.Logger) -> str:
    code, output = run([install / "bin" / "postgres", "-V"], account, logger, timeout=30)
    match = re.search(r"\(PostgreSQL\) (\d+)", output)
    if code != 0 or match is None:
        raise EmbeddedPostgresError(
            f"cannot run {install / 'bin' / 'postgres'} as {account.name} "
            f"(exit {code}): {output.strip()}"
        )
    return match.group(1)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            os.chown(Path(dirpath) / name, uid, gid, follow_symlinks=False)


def ensure_cluster(
    data_dir: Path, cluster: Path, account: Account, install: Path, logger: logging.Logger
) -> None:
    """Make sure ``cluster`` (inside ``data_dir``) holds a cluster of the installed major
    version owned by ``account``, creating it when missing."""
    major = _server_major(account, install, logger)
    version_file = cluster / "PG_VERSION"
    if version_file.is_file():
        cluster_major = version_file.read_text().strip()
        if cluster_major != major:
            raise EmbeddedPostgresError(
                f"cluster {cluster} was created by PostgreSQL {cluster_major} but the "
                f"installed server is PostgreSQL {major}; upgrade it with pg_upgrade or "
                "dump/restore"
            )
        if account.switch and cluster.stat().st_uid != account.uid:
            logger.warning(
                "cluster %s is not owned by %s: changing its ownership",
                cluster,
                account.name,
            )
            _chown_tree(cluster, account.uid, account.gid)
        return
    if cluster.exists():
        if any(cluster.iterdir()):
            raise EmbeddedPostgresError(
                f"{cluster} exists but is not a PostgreSQL cluster (no PG_VERSION); "
                "refusing to touch it"
            )
        cluster.rmdir()
    # initdb into a scratch directory and rename it into place, so that an interrupted
    # initdb never leaves a half-made cluster behind.
    scratch = data_dir / "pg.initdb"
    if scratch.exists():
        logger.warning("removing %s left by an interrupted initdb", scratch)
        shutil.rmtree(scratch)
    scratch.mkdir(mode=0o700)
    if account.switch:
        os.chown(scratch, account.uid, account.gid)
    logger.info("creating PostgreSQL %s cluster in %s", major, cluster)
    code, output = run(
        [
            install / "bin" / "initdb",
            "-D",
            scratch,
            "--auth=trust",
            "-U",
            DB_USER,
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ],
        account,
        logger,
        timeout=_INITDB_TIMEOUT,
    )
    if code != 0:
        shutil.rmtree(scratch, ignore_errors=True)
        raise EmbeddedPostgresError(f"initdb failed (exit {code}):\n{output.strip()}")
    logger.debug("initdb output:\n%s", output)
    scratch.rename(cluster)
    _fsync_dir(data_dir)
