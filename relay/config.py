"""Configuration: one TOML file, environment overrides, command-line overrides; frozen.

Precedence, lowest first: built-in defaults, ``config.toml``, environment variables
(``FITRELAY_DB_DSN``, ``FITRELAY_PORT``, ``FITRELAY_HOST``, ``FITRELAY_DATA_DIR``), then the
command line. :func:`load` validates everything once; the result is passed to constructors.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from relay.fetcherconfig import FetcherConfig, FreshnessConfig
from relay.nostr.auth import normalise_url
from relay.nostr.errors import RelayError
from relay.nostr.event import MAX_KIND, is_hex64
from relay.nostr.kinds import PRESETS
from relay.nostr.limits import Limits
from relay.nostr.routes import UrlRules

__all__ = [
    "AuthConfig",
    "CacheConfig",
    "Config",
    "ConfigError",
    "DbConfig",
    "ExportConfig",
    "FetcherConfig",
    "FreshnessConfig",
    "IndexerConfig",
    "LoggingConfig",
    "MetricsConfig",
    "PolicyConfig",
    "RateConfig",
    "RateLimitsConfig",
    "RelayConfig",
    "SearchConfig",
    "TagsConfig",
    "WritePolicyConfig",
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


AUTH_REQUIRED = ("none", "writes", "reads", "all")


_TAG_NAME = re.compile(r"[A-Za-z0-9_.:-]{2,64}")


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


class RateConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Token-bucket rates, per second (0 turns one off), and bursts (0: one second's worth,
    at least 1)."""

    event_per_second: float = 0.0
    event_burst: int = 0
    req_per_second: float = 0.0
    req_burst: int = 0
    count_per_second: float = 0.0
    count_burst: int = 0


class RateLimitsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    ip: RateConfig = RateConfig()
    """Per client address, shared by all its connections to this process."""
    pubkey: RateConfig = RateConfig()
    """Per authenticated pubkey (NIP-42), in addition to its address's."""
    max_connections_per_ip: int = 0
    """Open WebSocket connections per client address; more are refused with HTTP 429."""
    max_buckets: int = 100_000
    """Most buckets held in memory; full (idle) buckets are dropped first."""


class WritePolicyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    plugin: str = ""
    """Command of a strfry-compatible write-policy plugin (JSONL on stdin/stdout); empty: none."""
    timeout_ms: int = 5_000
    """Longest the plugin may take to answer for one event."""
    on_failure: str = "reject"
    """When the plugin is down or too slow: reject (error:) or accept the event."""


class SearchConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = True
    """Answer NIP-50 ``search`` filters (needs pg_trgm in the database; without it they get
    CLOSED unsupported: and the log says why)."""
    kinds: list[int] = msgspec.field(default_factory=lambda: [33401, 33402])
    """Kinds that get a search document (title, hashtags, equipment, content); add 1 for
    notes. Documents of a kind added later are built at the next start."""


class TagsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    indexed: list[str] = msgspec.field(
        default_factory=lambda: ["exercise", "template", "team", "activity", "activity_type"]
    )
    """Multi-letter tag names indexed (for events of every kind) and so answered in filters
    (``#exercise``); single letters always are. A name added later is indexed over the
    stored events at the next start; a filter on a name not listed gets CLOSED."""


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
    """Longest a REQ or COUNT query may run, from when it holds a pooled connection, before it
    is cancelled with CLOSED."""
    answer_buffer_bytes: int = 1_048_576
    """A stored answer is queued in chunks of about this size; the next one is read and
    encoded only when less than this is left unsent (at most a quarter of
    max_pending_outbound_bytes is used)."""
    event_cache_bytes: int = 268_435_456
    """Memory for stored events' JSON in each process (estimated); queries then read only ids
    from PostgreSQL for the events held. 0 turns it off."""
    mirror_events: int = 100_000
    """The newest stored events each process holds in memory, indexed, answering REQs without
    PostgreSQL (relay.storage.mirror). 0 turns it off."""
    expiration_sweep_seconds: int = 60
    """How often expired events (NIP-40) are deleted; they are never served meanwhile."""
    compression: bool = False
    """Offer permessage-deflate (costs CPU per message)."""
    workers: int = 1
    """Relay processes sharing the port (SO_REUSEPORT); live events cross them by the log."""
    tls_cert: str = ""
    """PEM certificate chain; with tls_key, the relay serves wss:// itself."""
    tls_key: str = ""
    public_url: str = ""
    """The ws:// or wss:// URL clients connect to; NIP-42 AUTH events must name it. Empty:
    AUTH is not offered."""
    trusted_proxies: list[str] = []
    """CIDRs of reverse proxies whose X-Forwarded-For / X-Real-IP name the client."""
    limits: Limits = Limits()
    info: Nip11Config = Nip11Config()
    cache: CacheConfig = CacheConfig()
    rate_limits: RateLimitsConfig = RateLimitsConfig()
    write_policy: WritePolicyConfig = WritePolicyConfig()
    search: SearchConfig = SearchConfig()
    tags: TagsConfig = TagsConfig()


class DbConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    dsn: str = ""
    """PostgreSQL DSN; empty runs an embedded PostgreSQL under data_dir."""
    data_dir: str = "./var"
    pool_min: int = 2
    pool_max: int = 10
    """Connections for REQ and COUNT (under relay.query_timeout_ms)."""
    pool_wait_ms: int = 2_000
    """Longest a REQ or COUNT waits for a pooled connection before it is answered
    ``CLOSED error: relay busy``; not part of relay.query_timeout_ms."""
    pool_max_per_connection: int = 2
    """Pooled connections one client connection may hold at once, so no client takes the
    whole pool; its other queries wait their turn (within its max_queries_in_flight)."""
    write_pool_max: int = 3
    """Connections for the writer, the live tail and the expiration sweep: their own pool,
    so client queries never queue in front of a commit."""
    write_timeout_ms: int = 60_000
    """Longest one writer batch, log read or sweep statement may run (0: no limit)."""
    read_dsns: list[str] = []
    """Hot standbys of the primary (``dsn``) that REQ, COUNT and NIP-77 reads may run on
    (docs/scaling.md); writes, the log tail and the indexer stay on the primary."""
    replica_max_lag_ms: int = 5_000
    """A replica further behind the primary than this is not read from until it catches up."""
    replica_poll_ms: int = 200
    """How often each replica's replay position (and the primary's WAL position) is read."""
    replica_retry_max_ms: int = 30_000
    """Longest wait before a failed replica is tried again (the wait doubles from
    replica_poll_ms with each failure)."""
    partitioning: str = ""
    """``"monthly"``: events partitioned by created_at month (converted at start if need be;
    docs/scaling.md); ``""``: one table."""
    partitions_ahead: int = 2
    """Month partitions kept made ahead of the current month (partitioned databases)."""


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


class PolicyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Which events are accepted (reported in NIP-11). Deny lists win over allow lists."""

    preset: str = ""
    """"fitness" accepts only the fitness kinds and those beside them; "" any kind."""
    kinds_allow: list[int] = []
    """Kinds accepted besides the preset's; with no preset, only these (empty: any)."""
    kinds_deny: list[int] = []
    pubkeys_allow: list[str] = []
    """Hex pubkeys that alone may publish (empty: anyone)."""
    pubkeys_deny: list[str] = []
    min_pow_difficulty: int = 0
    """NIP-13: leading zero bits every event id needs (0: none)."""


class AuthConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """NIP-42, offered when ``relay.public_url`` is set."""

    required: str = "none"
    """none, writes (events only from their authenticated author), reads (REQ/COUNT), all."""
    kinds: list[int] = []
    """Kinds whose writes and reads need AUTH whatever ``required`` says."""
    window_seconds: int = 600
    """How far an AUTH event's created_at may be from now."""


class ExportConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pseudonym_secret_file: str = ""
    """File holding the secret of ``export-table --pseudonymize`` (no default secret)."""


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    relay: RelayConfig = RelayConfig()
    indexer: IndexerConfig = IndexerConfig()
    fetcher: FetcherConfig = FetcherConfig()
    metrics: MetricsConfig = MetricsConfig()
    logging: LoggingConfig = LoggingConfig()
    db: DbConfig = DbConfig()
    policy: PolicyConfig = PolicyConfig()
    auth: AuthConfig = AuthConfig()
    export: ExportConfig = ExportConfig()

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
    if config.relay.mirror_events < 0:
        raise ConfigError("relay.mirror_events must not be negative (0 turns it off)")
    if config.relay.event_cache_bytes < 0:
        raise ConfigError("relay.event_cache_bytes must not be negative (0 turns it off)")
    cache = config.relay.cache
    if min(cache.max_bytes, cache.max_entries, cache.max_result_events) < 1:
        raise ConfigError("relay.cache sizes must be at least 1")
    if not 1 <= config.relay.workers <= 64:
        raise ConfigError("relay.workers must be between 1 and 64")
    if config.relay.workers > 1 and config.relay.port == 0:
        raise ConfigError("relay.workers > 1 needs a fixed relay.port to share")
    _check_limits(config.relay)
    _check_indexing(config.relay)
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
    if limits.max_queries_in_flight < 1:
        raise ConfigError("relay.limits.max_queries_in_flight must be at least 1")
    if config.relay.answer_buffer_bytes < 1:
        raise ConfigError("relay.answer_buffer_bytes must be at least 1")
    if config.db.pool_wait_ms < 1 or config.db.pool_max_per_connection < 1:
        raise ConfigError("db.pool_wait_ms and db.pool_max_per_connection must be at least 1")
    if config.db.pool_min < 1 or config.db.pool_max < config.db.pool_min:
        raise ConfigError("db.pool_min must be at least 1 and at most db.pool_max")
    _check_replicas(config.db)
    _check_policy(config)
    _check_fetcher(config.fetcher)


def _check_replicas(db: DbConfig) -> None:
    if (db.dsn and db.dsn in db.read_dsns) or len(set(db.read_dsns)) < len(db.read_dsns):
        raise ConfigError("db.read_dsns must name distinct standbys, not the primary")
    if min(db.replica_max_lag_ms, db.replica_poll_ms) < 1:
        raise ConfigError("db.replica_max_lag_ms and db.replica_poll_ms must be at least 1")
    if db.replica_retry_max_ms < db.replica_poll_ms:
        raise ConfigError("db.replica_retry_max_ms must be at least db.replica_poll_ms")
    if db.partitioning not in ("", "monthly") or db.partitions_ahead < 1:
        raise ConfigError('db.partitioning must be "" or "monthly", db.partitions_ahead >= 1')


def _check_fetcher(fetcher: FetcherConfig) -> None:
    if min(fetcher.concurrency, fetcher.batch, fetcher.queue_size, fetcher.max_attempts) < 1:
        raise ConfigError(
            "fetcher.concurrency, batch, queue_size and max_attempts must be at least 1"
        )
    if min(fetcher.timeout_seconds, fetcher.retry_base_seconds, fetcher.interval_seconds) <= 0:
        raise ConfigError("fetcher.timeout_seconds, retry_base_seconds and interval_seconds > 0")
    if fetcher.retry_max_seconds < fetcher.retry_base_seconds:
        raise ConfigError("fetcher.retry_max_seconds must be at least retry_base_seconds")
    fresh = fetcher.freshness
    if not set(fresh.author_kinds) <= {0, 3, 10002}:
        raise ConfigError("fetcher.freshness.author_kinds may hold only 0, 3 and 10002")
    thresholds = (fresh.events_seconds, fresh.profiles_seconds, fresh.contact_lists_seconds,
                  fresh.relay_lists_seconds, fresh.interval_seconds)  # fmt: skip
    if min(thresholds) <= 0 or fresh.batch < 1:
        raise ConfigError("fetcher.freshness: thresholds and interval > 0, batch at least 1")
    rules = UrlRules(allow_loopback=fetcher.allow_loopback)
    for url in fetcher.upstreams:
        if rules.normalise(url) is None:
            raise ConfigError(
                f"fetcher.upstreams: {url!r} is not a ws:// or wss:// URL of a public host"
                " (loopback and private hosts need fetcher.allow_loopback)"
            )


def _check_policy(config: Config) -> None:
    policy, auth = config.policy, config.auth
    if policy.preset and policy.preset not in PRESETS:
        raise ConfigError(f"policy.preset must be one of {', '.join(PRESETS)} or empty")
    for key in ("kinds_allow", "kinds_deny"):
        if any(not 0 <= kind <= MAX_KIND for kind in getattr(policy, key)):
            raise ConfigError(f"policy.{key} must hold kinds from 0 to {MAX_KIND}")
    for key in ("pubkeys_allow", "pubkeys_deny"):
        if not all(map(is_hex64, getattr(policy, key))):
            raise ConfigError(f"policy.{key} must hold 64 lowercase hex pubkeys")
    if not 0 <= policy.min_pow_difficulty <= 256:
        raise ConfigError("policy.min_pow_difficulty must be between 0 and 256")
    if any(not 0 <= kind <= MAX_KIND for kind in auth.kinds):
        raise ConfigError(f"auth.kinds must hold kinds from 0 to {MAX_KIND}")
    if auth.required not in AUTH_REQUIRED:
        raise ConfigError("auth.required must be none, writes, reads or all")
    if auth.window_seconds < 1:
        raise ConfigError("auth.window_seconds must be at least 1")
    if config.relay.public_url and not normalise_url(config.relay.public_url):
        raise ConfigError("relay.public_url must be a ws:// or wss:// URL")
    if (auth.required != "none" or auth.kinds) and not config.relay.public_url:
        raise ConfigError("auth.required and auth.kinds need relay.public_url (AUTH names it)")


def _check_indexing(relay: RelayConfig) -> None:
    """[relay.search] and [relay.tags]."""
    for kind in relay.search.kinds:
        if not 0 <= kind <= 65_535:
            raise ConfigError("relay.search.kinds must hold kinds between 0 and 65535")
    for name in relay.tags.indexed:
        if not _TAG_NAME.fullmatch(name):
            raise ConfigError(
                "relay.tags.indexed holds multi-letter tag names: 2 to 64 ASCII letters,"
                f" digits and _ - . : ({name!r} is not one)"
            )


def _check_limits(relay: RelayConfig) -> None:
    """[relay.rate_limits], [relay.write_policy] and relay.trusted_proxies."""
    rates = relay.rate_limits
    for scope in (rates.ip, rates.pubkey):
        for field in scope.__struct_fields__:
            if getattr(scope, field) < 0:
                raise ConfigError(f"relay.rate_limits: {field} must not be negative")
    if rates.max_connections_per_ip < 0 or rates.max_buckets < 1:
        raise ConfigError(
            "relay.rate_limits: max_connections_per_ip must be >= 0, max_buckets >= 1"
        )
    for cidr in relay.trusted_proxies:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(f"relay.trusted_proxies: not an address or CIDR: {cidr!r}") from None
    policy = relay.write_policy
    if policy.on_failure not in ("reject", "accept"):
        raise ConfigError("relay.write_policy.on_failure must be reject or accept")
    if policy.timeout_ms < 1:
        raise ConfigError("relay.write_policy.timeout_ms must be at least 1")
    if policy.plugin:
        try:
            if not shlex.split(policy.plugin):
                raise ValueError
        except ValueError:
            raise ConfigError("relay.write_policy.plugin is not a command line") from None
