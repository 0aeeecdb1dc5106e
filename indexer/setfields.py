"""The encoded fields of the sets a binary COPY writes (:mod:`indexer.rowcopy`): a set's
exercise reference and its values, raw and mapped to research units.

Sets repeat a small vocabulary of coordinates, values and formats, and the mapping is pure,
so both are computed and encoded once and looked up after (:class:`SetFields`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from indexer import pgbinary
from indexer.model import Address
from indexer.store import LinkedExercise, read_set, set_columns
from relay.nostr.kinds import EXERCISE

__all__ = ["SetFields", "read"]

Address2 = tuple[str, str]


@functools.lru_cache(maxsize=1 << 16)
def _reading(
    values_raw: tuple[str, ...],
    format: tuple[str, ...] | None,
    format_units: tuple[str | None, ...] | None,
    equipment: str | None,
    prescribed: bool,
) -> tuple[Any, ...]:
    linked = None if format is None else LinkedExercise("", format, format_units or (), equipment)
    return set_columns(read_set(values_raw, linked, prescribed=prescribed))


def read(
    values_raw: Sequence[str], linked: LinkedExercise | None, prescribed: bool = False
) -> tuple[Any, ...]:
    """A set's mapped values (the set tables' columns weight_kg … mapped_by), cached."""
    if linked is None:
        return _reading(tuple(values_raw), None, None, None, prescribed)
    return _reading(
        tuple(values_raw), linked.format, linked.format_units, linked.equipment, prescribed
    )


_SET_VALUE_TYPES: tuple[Callable[[Any], bytes], ...] = (
    pgbinary.float8,
    pgbinary.text,
    pgbinary.text,
    pgbinary.float8,
    pgbinary.float8,
    pgbinary.text,
    pgbinary.text,
    pgbinary.float8,
    pgbinary.float8,
    pgbinary.float8,
    pgbinary.text,
)


def _values_field(
    values_raw: tuple[str, ...], linked: LinkedExercise | None, prescribed: bool
) -> bytes:
    """``values_raw`` and the mapped values, encoded: the tail of a set's row."""
    mapped = read(values_raw, linked, prescribed)
    fields = [encode(v) for encode, v in zip(_SET_VALUE_TYPES, mapped, strict=True)]
    return pgbinary.text_array(values_raw) + b"".join(fields)


@functools.lru_cache(maxsize=1 << 16)
def _reference(
    raw: str, relay: str | None, kind: int | None, pubkey: str | None, d: str | None
) -> tuple[Address2 | None, bytes]:
    """The exercise address a set names (None when it names none) and the encoded
    ``exercise_ref, exercise_pubkey, exercise_d, relay_hint`` fields."""
    if kind != EXERCISE or pubkey is None or d is None:
        pubkey = d = None
    fields = b"".join(
        (pgbinary.text(raw), pgbinary.text(pubkey), pgbinary.text(d), pgbinary.text(relay))
    )
    return (None if pubkey is None or d is None else (pubkey, d)), fields


_Reading = tuple[tuple[str, ...] | None, tuple[str | None, ...] | None, str | None, bool]
_ENCODED_VALUES: dict[_Reading, dict[tuple[str, ...], bytes]] = {}
"""Encoded set values by how they are read (format, units, equipment, prescribed), then
by the raw values: sets repeat a small vocabulary of both."""
_ENCODED_LIMIT = 1 << 16


class SetFields:
    """The encoded reference and value fields of the sets of one COPY.

    A batch names each exercise coordinate many times: its address, the indexed exercise
    there and the cache of values read through that exercise are looked up once per
    coordinate; a set then costs two dictionary lookups.
    """

    def __init__(self, known: dict[Address2, LinkedExercise], prescribed: bool) -> None:
        self.known = known
        self.prescribed = prescribed
        self.coordinates: dict[
            tuple[str, str | None],
            tuple[bytes, dict[tuple[str, ...], bytes], LinkedExercise | None],
        ] = {}

    def of(self, ref: Address, values_raw: tuple[str, ...]) -> tuple[bytes, bytes]:
        """The :data:`_SET_REF` fields and the values fields of one set."""
        entry = self.coordinates.get((ref.raw, ref.relay))
        if entry is None:
            entry = self._coordinate(ref)
        reference, values, linked = entry
        encoded = values.get(values_raw)
        if encoded is None:
            if len(values) >= _ENCODED_LIMIT:
                values.clear()
            encoded = values[values_raw] = _values_field(values_raw, linked, self.prescribed)
        return reference, encoded

    def _coordinate(
        self, ref: Address
    ) -> tuple[bytes, dict[tuple[str, ...], bytes], LinkedExercise | None]:
        address, fields = _reference(ref.raw, ref.relay, ref.kind, ref.pubkey, ref.d)
        linked = None if address is None else self.known.get(address)
        if linked is None:
            reading: _Reading = (None, None, None, self.prescribed)
            reference = fields + pgbinary.NULL
        else:
            reading = (linked.format, linked.format_units, linked.equipment, self.prescribed)
            reference = fields + pgbinary.text(linked.event_id)
        values = _ENCODED_VALUES.get(reading)
        if values is None:
            if len(_ENCODED_VALUES) >= _ENCODED_LIMIT:
                _ENCODED_VALUES.clear()
            values = _ENCODED_VALUES[reading] = {}
        entry = (reference, values, linked)
        self.coordinates[(ref.raw, ref.relay)] = entry
        return entry
