"""The limits a relay enforces on what clients send; plain data, reported in NIP-11."""

from __future__ import annotations

import msgspec

__all__ = ["Limits"]


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Every limit the session enforces. Zero means "no limit" only where documented."""

    max_message_bytes: int = 262_144
    """Largest client message accepted, in bytes (NIP-11 ``max_message_length``)."""
    max_event_bytes: int = 131_072
    """Largest event accepted, as the JSON object sent, in bytes."""
    max_content_bytes: int = 65_536
    """Largest ``content`` accepted, in UTF-8 bytes (NIP-11 ``max_content_length``)."""
    max_event_tags: int = 2_500
    """Most tags one event may carry (NIP-11 ``max_event_tags``)."""
    max_tag_value_bytes: int = 65_536
    """Longest single tag element accepted, in UTF-8 bytes."""
    max_subscriptions: int = 40
    """Open subscriptions per connection (NIP-11 ``max_subscriptions``)."""
    max_queries_in_flight: int = 8
    """Stored queries (REQ's stored events, COUNT) one connection may have running at once;
    one more is refused with ``CLOSED rate-limited:`` before any work starts."""
    max_subid_length: int = 64
    """Longest subscription id (NIP-01 says 64)."""
    max_filters: int = 20
    """Filters in one REQ or COUNT."""
    max_filter_values: int = 1_000
    """Values in one filter field (ids, authors, kinds, each tag letter)."""
    max_limit: int = 5_000
    """Largest ``limit`` honoured; a larger one is lowered to this (NIP-11 ``max_limit``)."""
    default_limit: int = 500
    """Events returned by a filter without a ``limit`` (NIP-11 ``default_limit``)."""
    created_at_future_seconds: int = 900
    """How far into the future ``created_at`` may be (NIP-11 ``created_at_upper_limit``)."""
    created_at_past_seconds: int = 0
    """How far into the past ``created_at`` may be; 0 accepts any age (fitness history is old)."""
    max_negentropy_records: int = 500_000
    """Most events a NIP-77 NEG-OPEN may reconcile over; a filter matching more is refused
    (``blocked:``), which bounds a session's memory (about 150 bytes an event)."""
    max_negentropy_sessions: int = 4
    """Open NIP-77 negentropy sessions per connection."""
    negentropy_idle_seconds: int = 60
    """A negentropy session that sees no NEG-MSG for this long is closed (``closed:``)."""
    negentropy_frame_bytes: int = 262_144
    """Largest negentropy message the relay sends, in bytes before hex encoding (0 or at
    least 4096); the rest of the sync follows in later rounds."""
