"""The kinds fitrelay knows by name: one registry for the relay, its metrics and the indexer.

NIP-01's storage classes (regular, replaceable, ephemeral, addressable) are computed from the
number in :func:`relay.nostr.event.kind_class`; the fitness kinds below are the ones NIP-101e
clients publish (``shared/spec/nip101e.md``) plus the NIP-51 sets that group them.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from relay.nostr.event import KindClass, kind_class

__all__ = [
    "DELETION",
    "EXERCISE",
    "FITNESS_KINDS",
    "FITNESS_LIBRARY_KINDS",
    "KIND_NAMES",
    "LIST_KINDS",
    "LIST_MEMBER_KINDS",
    "RECORD_KINDS",
    "WORKOUT_RECORD",
    "WORKOUT_RECORD_LEGACY",
    "WORKOUT_TEMPLATE",
]

DELETION = 5
EXERCISE = 33401
WORKOUT_TEMPLATE = 33402
WORKOUT_RECORD = 1301
WORKOUT_RECORD_LEGACY = 33403
BOOKMARK_SET = 30003
CURATION_SET = 30004

KIND_NAMES: Mapping[int, str] = MappingProxyType(
    {
        EXERCISE: "exercise",
        WORKOUT_TEMPLATE: "workout_template",
        WORKOUT_RECORD: "workout_record",
        WORKOUT_RECORD_LEGACY: "workout_record_legacy",
        BOOKMARK_SET: "fitness_list",
        CURATION_SET: "fitness_list",
        DELETION: "deletion",
    }
)
"""A bounded name for each kind known by name (metric labels)."""

RECORD_KINDS = frozenset({WORKOUT_RECORD, WORKOUT_RECORD_LEGACY})
"""Workout records: 1301 in either dialect and the legacy addressable 33403."""
LIST_KINDS = frozenset({BOOKMARK_SET, CURATION_SET})
"""NIP-51 sets; fitness lists when a member is an exercise or a template."""
LIST_MEMBER_KINDS = frozenset({EXERCISE, WORKOUT_TEMPLATE})
"""Members that make a NIP-51 set a fitness list."""
FITNESS_KINDS = frozenset({EXERCISE, WORKOUT_TEMPLATE, *RECORD_KINDS, *LIST_KINDS})
"""Every kind the indexer reads."""
FITNESS_LIBRARY_KINDS = frozenset(
    k for k in FITNESS_KINDS if kind_class(k) in (KindClass.REPLACEABLE, KindClass.ADDRESSABLE)
)
"""The replaceable and addressable fitness kinds (exercises, templates, legacy records,
lists): the library every client fetches on start, kept longest by the query cache."""
