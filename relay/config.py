"""Configuration: one TOML file, environment overrides, command-line overrides; frozen.

Precedence, lowest first: built-in defaults, ``config.toml``, environment variables
(``FITRELAY_DB_DSN``, ``FITRELAY_PORT``, ``FITRELAY_HOST``, ``FITRELAY_DATA_DIR``), then the
command line. :func:`load` validates everything once; the result is passed to constructors.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from relay.nostr.errors import RelayError
from relay.nostr.limits import Limits

__all__ = [
    "CacheConfig",
    "Config",
    "ConfigError",
    "DbConfig",
    "IndexerConfig",
    "LoggingConfig",
    "MetricsConfig",
    "RelayConfig",
    "load",
    "parse_listen",
]


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9477`` for IPv6) as the host, brackets removed, and the port.

    Raises:
        ValueError: not host:port with a port from 0 to 65535.
    """
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65_535:
        raise ValueError(f"not host:port: {listen!r}")
    return host.strip("[]"), int(port)


class ConfigError(RelayError):
    """The configuration cannot be used; the message says which key and why."""


class Nip11Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str = "fitrelay"
    description: str = "A Nostr relay for fitness data: exercises, templates and workouts."
    pubkey: str = ""
    contact: str = ""
    icon: str = ""


class CacheConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = True
    """Answer repeated REQ/COUNT over replaceable and addressable kinds from memory."""
    max_bytes: int = 67_108_864
    max_entries: int = 50_000
    max_result_events: int = 2_000
    """Larger answers are not kept."""
    max_age_seconds: int = 300
    """Longest an answer is kept (a backstop; writes invalidate answers exactly)."""


class RelayConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 7447
    max_batch: int = 1_000
    """Most events one writer transaction stores."""
    writer_queue: int = 10_000
    """Events waiting for the writer before publishers are made to wait."""
    max_pending_outbound_bytes: int = 8_388_608
    """Bytes queued for one client before it is disconnected as too slow."""
    query_timeout_ms: int = 10_000
    """Longest a REQ or COUNT query may run before it is cancelled with CLOSED."""
    event_cache_bytes: int = 268_435_456
    """Memory for stored events' JSON in each process (estimated); queries then read only ids
    from PostgreSQL for the events held. 0 turns it off."""
    expiration_sweep_seconds: int = 60
    """How often expired events (NIP-40) are deleted; they are never served meanwhile."""
    compression: bool = False
    """Offer permessage-deflate (costs CPU per message)."""
    workers: int = 1
    """Relay processes sharing the port (SO_REUSEPORT); live events cross them by the log."""
    tls_cert: str = ""
    """PEM certificate chain; with tls_key, the relay serves wss:// itself."""
    tls_key: str = ""
    limits: Limits = Limits()
    info: Nip11Config = Nip11Config()
    cache: CacheConfig = CacheConfig()


class DbConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    dsn: str = ""
    """PostgreSQL DSN; empty runs an embedded PostgreSQL under data_dir."""
    data_dir: str = "./var"
    pool_min: int = 2
    pool_max: int = 10
    """Connections for REQ and COUNT (under relay.query_timeout_ms)."""
    write_pool_max: int = 3
    """Connections for the writer, the live tail and the expiration sweep: their own pool,
    so client queries never queue in front of a commit."""
    write_timeout_ms: int = 60_000
    """Longest one writer batch, log read or sweep statement may run (0: no limit)."""


class IndexerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = True
    """Run the fitness indexer inside ``fitrelay serve`` (``fitrelay index`` runs it alone)."""
    batch_size: int = 500
    """Log entries applied per indexer transaction."""


class MetricsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    listen: str = "127.0.0.1:9477"
    """host:port of the HTTP server for /metrics, /healthz and /readyz; empty turns it off."""
    ready_max_indexer_lag_seconds: float = 300.0
    """/readyz fails while the indexer is further behind the log than this."""


class LoggingConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    level: str = "INFO"
    format: str = "text"
    """text, or json for one JSON object per line."""


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    relay: RelayConfig = RelayConfig()
    indexer: IndexerConfig = IndexerConfig()
    metrics: MetricsConfig = MetricsConfig()
    logging: LoggingConfig = LoggingConfig()
    db: DbConfig = DbConfig()

    @property
    def data_path(self) -> Path:
        return Path(self.db.data_dir)


_ENV: dict[str, tuple[str, str]] = {
    "FITRELAY_DB_DSN": ("db", "dsn"),
    "FITRELAY_DATA_DIR": ("db", "data_dir"),
    "FITRELAY_HOST": ("relay", "host"),
    "FITRELAY_PORT": ("relay", "port"),
    "FITRELAY_METRICS_LISTEN": ("metrics", "listen"),
    "FITRELAY_LOG_FORMAT": ("logging", "format"),
}


def _set(tree: dict[str, Any], section: str, key: str, value: object) -> None:
    node = tree.setdefault(section, {})
    if not isinstance(node, dict):
        raise ConfigError(f"[{section}] must be a table")
    node[key] = value


def load(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[tuple[str, str], object] | None = None,
) -> Config:
    """Read and validate the configuration.

    Args:
        path: a TOML file; None uses built-in defaults only.
        env: the environment to read overrides from (``os.environ`` when None).
        overrides: ``{(section, key): value}`` from the command line; None values are skipped.

    Raises:
        ConfigError: naming the file, key and problem.
    """
    tree: dict[str, Any] = {}
    if path is not None:
        try:
            tree = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    environ = os.environ if env is None else env
    for name, (section, key) in _ENV.items():
        if environ.get(name):
            value: object = environ[name]
            if key == "port":
                try:
                    value = int(environ[name])
                except ValueError:
                    raise ConfigError(f"{name} must be an integer") from None
            _set(tree, section, key, value)
    for (section, key), value in (overrides or {}).items():
        if value is not None:
            _set(tree, section, key, value)
    try:
        config = msgspec.convert(tree, Config)
    except msgspec.ValidationError as exc:
        where = f"{path}: " if path is not None else ""
        raise ConfigError(f"{where}{exc}") from None
    _check(config)
    return config


def _check(config: Config) -> None:
    if not 0 <= config.relay.port < 65_536:
        raise ConfigError("relay.port must be between 0 (any free port) and 65535")
    limits = config.relay.limits
    for field in limits.__struct_fields__:
        if getattr(limits, field) < 0:
            raise ConfigError(f"relay.limits.{field} must not be negative")
    if 0 < limits.negentropy_frame_bytes < 4_096:
        raise ConfigError("relay.limits.negentropy_frame_bytes must be 0 or at least 4096")
    if limits.default_limit > limits.max_limit:
        raise ConfigError("relay.limits.default_limit must not exceed max_limit")
    if config.relay.max_batch < 1 or config.relay.writer_queue < 1:
        raise ConfigError("relay.max_batch and relay.writer_queue must be at least 1")
    if config.relay.event_cache_bytes < 0:
        raise ConfigError("relay.event_cache_bytes must not be negative (0 turns it off)")
    cache = config.relay.cache
    if min(cache.max_bytes, cache.max_entries, cache.max_result_events) < 1:
        raise ConfigError("relay.cache sizes must be at least 1")
    if not 1 <= config.relay.workers <= 64:
        raise ConfigError("relay.workers must be between 1 and 64")
    if config.relay.workers > 1 and config.relay.port == 0:
        raise ConfigError("relay.workers > 1 needs a fixed relay.port to share")
    if config.indexer.batch_size < 1:
        raise ConfigError("indexer.batch_size must be at least 1")
    if bool(config.relay.tls_cert) != bool(config.relay.tls_key):
        raise ConfigError("relay.tls_cert and relay.tls_key must be set together")
    if config.metrics.listen:
        try:
            parse_listen(config.metrics.listen)
        except ValueError:
            raise ConfigError(
                "metrics.listen must be host:port (port 0 picks a free one)"
            ) from None
    if config.logging.format not in ("text", "json"):
        raise ConfigError("logging.format must be text or json")
    if config.logging.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("logging.level must be DEBUG, INFO, WARNING or ERROR")
    if config.db.write_pool_max < 1 or config.db.write_timeout_ms < 0:
        raise ConfigError("db.write_pool_max must be at least 1, db.write_timeout_ms >= 0")
    if config.db.pool_min < 1 or config.db.pool_max < config.db.pool_min:
        raise ConfigError("db.pool_min must be at least 1 and at most db.pool_max")
