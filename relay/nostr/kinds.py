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
    "FITNESS_PRESET",
    "KIND_NAMES",
    "LIST_KINDS",
    "LIST_MEMBER_KINDS",
    "PRESETS",
    "RECORD_KINDS",
    "RELAY_LIST",
    "WORKOUT_RECORD",
    "WORKOUT_RECORD_LEGACY",
    "WORKOUT_TEMPLATE",
]

DELETION = 5
RELAY_LIST = 10002
"""NIP-65: where an author publishes (``write``) and reads."""
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

FITNESS_PRESET = frozenset(
    {
        0,  # profile metadata
        1,  # shares: POWR and RUNSTR post workouts as notes (q/e/naddr links, t=powr)
        3,  # follows
        5,  # NIP-09 deletions (POWR deletes templates with an e tag)
        7,  # reactions: likes on workouts (POWR's social feed)
        1111,  # comments on workouts (POWR, NIP-10 style tags)
        10002,  # relay list (NIP-65)
        *FITNESS_KINDS,  # 33401, 33402, 1301, 33403, 30003, 30004
        30000,  # RUNSTR team members and season participants (NIP-51 follow sets)
        33404,  # RUNSTR teams
    }
)
"""``policy.preset = "fitness"``: what NIP-101e clients publish (``shared/spec/nip101e.md``
sections 6 and 7) and the profile, follow, relay-list and deletion kinds they need around
it. Not in it: 22242 (AUTH answers are never stored), NIP-101h health metrics (1351-1399,
encrypted by default), RUNSTR's 30100-30102 (they collide with NIP-113)."""
PRESETS: Mapping[str, frozenset[int]] = MappingProxyType({"fitness": FITNESS_PRESET})
"""Kind lists an operator names in ``policy.preset`` instead of listing kinds."""
