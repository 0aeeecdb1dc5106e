"""Reading ``kind:pubkey:d`` references the way clients actually write them (§6, §9.3).

Rules, in order:

1. ``raw`` is always the value exactly as written; parsing ignores surrounding whitespace.
2. Relay hints joined to the value with commas (``coord,wss://r1,wss://r2``) are cut off at
   the first comma; the first non-empty hint becomes ``relay`` unless the tag gave one. A
   d-tag can therefore not contain a comma (powr_web refuses such references as well).
3. A POWR ``::params`` suffix (``coord::3:10:60``) is cut off. The ``::`` right after the
   kind (``33402::local:x``) is not a suffix: it is an empty pubkey.
4. The rest is split with ``split(':', 2)``: the kind must be ASCII digits up to 65535, the
   pubkey exactly 64 lowercase hex digits (NIP-01; an upper-case key is refused rather than
   folded, as the relay does elsewhere), and ``d`` is everything after the second colon, so
   it may contain colons and may be ``""``.
5. A value with one colon (POWR RN's ``33401:<exerciseId>``) has no pubkey; its second part
   is kept as ``d`` so the local id survives, but the address is not resolvable.
"""

from __future__ import annotations

import functools
import re

from indexer.model import Address, Issue
from relay.nostr.event import MAX_KIND, is_hex64

__all__ = ["AddressKey", "address_issue", "address_key", "parse_address"]

AddressKey = tuple[int | None, str | None, str | None] | str

_KIND = re.compile(r"[0-9]{1,5}\Z")


def _kind(text: str) -> int | None:
    if not _KIND.match(text):
        return None
    kind = int(text)
    return kind if kind <= MAX_KIND else None


def _strip_params(coord: str) -> str:
    """Cut a ``::params`` suffix, leaving the empty-pubkey ``kind::d`` form alone."""
    head, sep, rest = coord.partition(":")
    if not sep:
        return coord
    # ``rest`` starting with ':' is an empty pubkey; look for '::' only after it.
    cut = rest.find("::", 1)
    if cut < 0:
        return coord
    return f"{head}:{rest[:cut]}"


@functools.lru_cache(maxsize=1 << 15)
def parse_address(value: str, relay: str | None = None) -> Address:
    """Parse a coordinate leniently; see the module notes for every rule.

    Cached: a batch names the same few thousand coordinates over and over."""
    hint = relay.strip() if relay is not None else ""
    coord, comma, hints = value.strip().partition(",")
    if comma and not hint:
        hint = next((h.strip() for h in hints.split(",") if h.strip()), "")
    parts = _strip_params(coord).split(":", 2)
    kind = _kind(parts[0])
    pubkey: str | None = None
    d: str | None = None
    if len(parts) == 3:
        pubkey = parts[1] if is_hex64(parts[1]) else None
        d = parts[2]
    elif len(parts) == 2:
        d = parts[1] or None
    return Address(raw=value, kind=kind, pubkey=pubkey, d=d, relay=hint or None)


def address_issue(address: Address, kind: int, index: int | None) -> Issue | None:
    """An issue for a reference that cannot name a ``kind`` address, else None."""
    if address.kind is not None and address.kind != kind:
        return Issue("unexpected_kind", f"expected kind {kind}: {address.raw!r}", index)
    if not address.resolvable:
        return Issue("malformed_coordinate", repr(address.raw), index)
    return None


def address_key(address: Address) -> AddressKey:
    """What counts as "the same coordinate" when numbering sets: the parsed parts of a
    resolvable address, else the stripped raw text."""
    if not address.resolvable:
        return address.raw.strip()
    return (address.kind, address.pubkey, address.d)
