"""The ``[fetcher]`` section of the configuration and its ``[fetcher.freshness]`` part
(checked with the rest in :mod:`relay.config`)."""

from __future__ import annotations

import msgspec

__all__ = ["FetcherConfig", "FreshnessConfig"]


class FreshnessConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Re-check upstream, in the background, what may have changed there since it was stored.

    Clients are always answered from the database; a re-check only replaces a stored version
    with a newer one."""

    enabled: bool = True
    """Re-check stale data while the fetcher runs."""
    author_kinds: list[int] = msgspec.field(default_factory=lambda: [0, 10002])
    """Replaceable kinds (of 0, 3 and 10002) refreshed for every author of indexed fitness
    events."""
    events_seconds: float = 300.0
    """Threshold of referenced exercises (33401) and templates (33402)."""
    profiles_seconds: float = 3_600.0
    """Threshold of profiles (kind 0)."""
    contact_lists_seconds: float = 21_600.0
    """Threshold of contact lists (kind 3)."""
    relay_lists_seconds: float = 43_200.0
    """Threshold of relay lists (kind 10002)."""
    batch: int = 100
    """Most addresses re-checked per cycle."""
    interval_seconds: float = 60.0
    """Pause between cycles."""

    def threshold(self, kind: int) -> float:
        """Seconds a stored version of ``kind`` stays fresh."""
        return {
            0: self.profiles_seconds,
            3: self.contact_lists_seconds,
            10002: self.relay_lists_seconds,
        }.get(kind, self.events_seconds)


class FetcherConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Fetch referenced but missing events (fitness.missing_references) from other relays."""

    enabled: bool = False
    """Run the fetcher inside ``fitrelay serve`` and ``fitrelay index``."""
    upstreams: list[str] = []
    """ws:// or wss:// relays asked after the hints and relay lists, in order."""
    use_hints: bool = True
    """Also ask the relays named by references' hints and authors' NIP-65 write lists."""
    allow_loopback: bool = False
    """Allow loopback and private addresses (upstreams and hints); for tests."""
    concurrency: int = 2
    """REQs in flight at once per upstream relay."""
    batch: int = 20
    """Addresses asked for in one REQ (one filter each)."""
    queue_size: int = 500
    """Most missing addresses taken per round."""
    timeout_seconds: float = 10.0
    """Longest wait to connect to an upstream, and for each of its answers."""
    max_attempts: int = 5
    """Tries of an address found nowhere before it is marked given_up."""
    retry_base_seconds: float = 60.0
    """Delay before the second try; it doubles with each try (with jitter)."""
    retry_max_seconds: float = 86_400.0
    """Longest delay between tries (also how long a failing upstream is skipped, at most)."""
    interval_seconds: float = 5.0
    """Pause between rounds when nothing is due."""
    freshness: FreshnessConfig = FreshnessConfig()
