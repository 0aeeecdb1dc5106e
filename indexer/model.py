"""The rows the indexer materializes, as plain values: what the parsers produce and the
store writes. Nothing here does I/O.

Conventions:
- ids and pubkeys are 64 lowercase hex characters; times are unix seconds (``int`` when
  they come from ``created_at``, ``float`` when they were parsed from a tag);
- every normalised value sits beside the raw text it came from, so nothing a client wrote
  is lost to a parsing decision;
- research units: kilograms, metres, seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "Address",
    "Exercise",
    "FitnessList",
    "Hashtag",
    "Issue",
    "ListItem",
    "Media",
    "NonWorkout",
    "PerformedSet",
    "PersonalRecordClaim",
    "PrescribedSet",
    "SetValues",
    "Split",
    "Template",
    "Workout",
]


@dataclass(frozen=True, slots=True)
class Address:
    """A reference to an addressable event, ``kind:pubkey:d``, as a tag wrote it.

    ``kind``, ``pubkey`` and ``d`` are None when that part is missing or malformed (a
    pubkey must be 64 lowercase hex); ``raw`` is always the value as written, ``relay`` the
    relay hint (None when absent or empty).
    """

    raw: str
    kind: int | None
    pubkey: str | None
    d: str | None
    relay: str | None = None

    @property
    def resolvable(self) -> bool:
        """Whether the reference names one address that could exist."""
        return self.kind is not None and self.pubkey is not None and self.d is not None


@dataclass(frozen=True, slots=True)
class Hashtag:
    """A ``t`` tag: ``tag`` is lowercased and stripped for search, ``raw`` as written."""

    tag: str
    raw: str


@dataclass(frozen=True, slots=True)
class Media:
    """One NIP-92 ``imeta`` entry of an exercise."""

    url: str | None
    mime_type: str | None
    width: int | None
    height: int | None
    alt: str | None
    raw: str
    """The imeta fields joined with ``;`` exactly as they came (one- or many-element form)."""


@dataclass(frozen=True, slots=True)
class Issue:
    """Something in an event the indexer could not understand (a row of ``index_errors``).

    ``tag_index`` is the position of the offending tag in ``tags``, None for the whole event.
    """

    reason: str
    detail: str
    tag_index: int | None = None


@dataclass(frozen=True, slots=True)
class SetValues:
    """The values of one prescribed or performed set, mapped to research units.

    ``mapped_by`` says how positions were read: ``format`` (through the exercise's
    ``format`` tag), ``default`` (the spec's ``weight,reps,rpe,set_type`` order, used when
    the exercise is unknown), ``keywords`` (a set_type keyword found out of place, e.g. POWR
    leaving out an undefined rpe) or ``none`` (no values).
    """

    weight_kg: float | None = None
    weight_raw: str | None = None
    weight_unit: str | None = None
    reps: float | None = None
    rpe: float | None = None
    set_type: str | None = None
    """warmup, normal, drop, failure or working; None when absent or not one of those."""
    set_type_raw: str | None = None
    duration_s: float | None = None
    distance_m: float | None = None
    heart_rate: float | None = None
    mapped_by: str = "none"


@dataclass(frozen=True, slots=True)
class PrescribedSet:
    """One ``exercise`` tag of a workout template: one prescribed set."""

    position: int
    """0-based order among the template's exercise tags."""
    tag_index: int
    exercise: Address
    values_raw: tuple[str, ...]
    """The tag elements after the coordinate and relay, minus a trailing set_number."""
    set_number: int
    """The tag's set_number when given, else the count of this coordinate so far (1, 2 …)."""
    set_number_given: bool
    group_number: int
    """Sets sharing a set_number across different exercises form one group (superset,
    circuit round); this is that number."""


@dataclass(frozen=True, slots=True)
class PerformedSet:
    """One ``exercise`` tag of a NIP-101e / POWR workout record: one completed set."""

    position: int
    tag_index: int
    exercise: Address
    values_raw: tuple[str, ...]
    set_number: int
    set_number_given: bool


@dataclass(frozen=True, slots=True)
class Split:
    """A RUNSTR split: cumulative elapsed time and/or that split's own pace."""

    number: int
    elapsed_s: float | None
    pace_s: float | None
    distance_raw: str | None
    """The older 4-element form's label, e.g. ``"1 km"``."""


@dataclass(frozen=True, slots=True)
class PersonalRecordClaim:
    """A ``pr`` tag: ``"<coord>,<metric>,<value>"`` (one string) or separate elements."""

    position: int
    exercise: Address
    metric: str | None
    value: float | None
    raw: str


@dataclass(frozen=True, slots=True)
class Exercise:
    """Kind 33401, identity ``(pubkey, d)``."""

    pubkey: str
    d: str
    event_id: str
    created_at: int
    title: str | None
    equipment: str | None
    """Lowercased; None when absent or empty."""
    difficulty: str | None
    format: tuple[str, ...]
    """Parameter names, lowercased, in order."""
    format_units: tuple[str | None, ...]
    """One unit per ``format`` entry (the key/value form is folded back), lowercased;
    ``warmup|normal|drop|failure`` becomes ``enum``."""
    format_units_raw: tuple[str, ...]
    instructions: str
    """Plain text: ``content``, or its JSON ``instructions`` field when it holds one."""
    exercise_type: str | None
    """POWR's off-spec ``type`` tag (strength, cardio, bodyweight)."""
    category: str | None
    hashtags: tuple[Hashtag, ...]
    media: tuple[Media, ...]


@dataclass(frozen=True, slots=True)
class Template:
    """Kind 33402, identity ``(pubkey, d)``, with its prescribed sets in tag order."""

    pubkey: str
    d: str
    event_id: str
    created_at: int
    title: str | None
    template_type: str | None
    rounds: float | None
    duration_s: float | None
    interval_s: float | None
    rest_between_rounds_s: float | None
    rest_between_sets_s: float | None
    difficulty: str | None
    notes: str
    client: str | None
    hashtags: tuple[Hashtag, ...]
    sets: tuple[PrescribedSet, ...]


@dataclass(frozen=True, slots=True)
class Workout:
    """A workout record: kind 1301 (either dialect) or the legacy 33403.

    ``dialect`` is ``nip101e`` (per-set strength, POWR and powr_web) or ``runstr`` (cardio
    summary).
    """

    event_id: str
    kind: int
    pubkey: str
    d: str | None
    created_at: int
    dialect: str
    title: str | None
    workout_type: str | None
    activity: str | None
    """Normalised lowercase activity: the ``type`` tag, else the RUNSTR verb (``run`` →
    ``running``), else ``activity``."""
    activity_raw: str | None
    started_at: float | None
    ended_at: float | None
    start_raw: str | None
    end_raw: str | None
    duration_s: float | None
    """The ``duration`` tag in any of its forms, else ``end - start`` when both are sane."""
    duration_raw: str | None
    completed: bool | None
    rounds_completed: float | None
    interval_s: float | None
    template: Address | None
    notes: str
    client: str | None
    source: str | None
    hashtags: tuple[Hashtag, ...]
    distance_m: float | None = None
    distance_raw: str | None = None
    distance_unit: str | None = None
    elevation_gain_m: float | None = None
    elevation_loss_m: float | None = None
    calories: float | None = None
    steps: float | None = None
    avg_heart_rate: float | None = None
    max_heart_rate: float | None = None
    avg_pace_s_per_km: float | None = None
    avg_pace_raw: str | None = None
    avg_pace_unit: str | None = None
    sets: tuple[PerformedSet, ...] = ()
    splits: tuple[Split, ...] = ()
    prs: tuple[PersonalRecordClaim, ...] = ()


@dataclass(frozen=True, slots=True)
class NonWorkout:
    """A kind 1301 that is not a workout in any known dialect (for example an e-mail)."""

    event_id: str
    pubkey: str
    created_at: int
    reason: str


@dataclass(frozen=True, slots=True)
class ListItem:
    position: int
    member: Address


@dataclass(frozen=True, slots=True)
class FitnessList:
    """A NIP-51 set (30003 bookmarks, 30004 curation: powr_web libraries, POWR Packs) with
    at least one 33401/33402 member; identity ``(kind, pubkey, d)``."""

    kind: int
    pubkey: str
    d: str
    event_id: str
    created_at: int
    title: str | None
    description: str | None
    items: tuple[ListItem, ...] = field(default=())
