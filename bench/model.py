"""The expected answer to a REQ, computed in Python from the events sent, under NIP-01 rules.

Written independently of the relay's code, so that it checks the relay rather than repeating
it. The stored set is a function of the set of events sent (fitrelay's documented guarantee;
the harness also sends each author's events in file order over one connection):

- a kind 5 deletion removes the same author's events named by ``e`` (never another
  deletion), and for ``a`` coordinates of its author every version with ``created_at`` up
  to the deletion's;
- deleting the version of a replaceable or addressable event by id also removes every
  version of that address up to its ``created_at``;
- of the remaining versions of an address the newest wins, the lowest id on a tie;
- the answer to a filter is the matching stored events ordered by ``created_at``
  descending then ``id`` ascending, cut at the filter's ``limit`` (capped at the relay's
  maximum) or at the relay's default limit when it has none.
"""

from __future__ import annotations

import bisect
import heapq
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import msgspec

__all__ = ["Ev", "Model", "decode_events", "matches", "order_key"]


class Ev(msgspec.Struct, frozen=True):
    """The fields of an event the model needs (content and sig are not kept)."""

    id: str
    pubkey: str
    created_at: int
    kind: int
    tags: list[list[str]]


_decoder = msgspec.json.Decoder(Ev)


def decode_events(lines: Iterable[bytes]) -> list[Ev]:
    return [_decoder.decode(line) for line in lines]


def _address(ev: Ev) -> tuple[int, str, str] | None:
    if ev.kind in (0, 3) or 10_000 <= ev.kind < 20_000:
        return (ev.kind, ev.pubkey, "")
    if 30_000 <= ev.kind < 40_000:
        for tag in ev.tags:
            if len(tag) >= 2 and tag[0] == "d":
                return (ev.kind, ev.pubkey, tag[1])
        return (ev.kind, ev.pubkey, "")
    return None


def order_key(ev: Ev) -> tuple[int, str]:
    return (-ev.created_at, ev.id)


def matches(flt: Mapping[str, Any], ev: Ev) -> bool:
    """NIP-01 filter matching; ``since`` and ``until`` are inclusive."""
    ids = flt.get("ids")
    if ids is not None and ev.id not in ids:
        return False
    authors = flt.get("authors")
    if authors is not None and ev.pubkey not in authors:
        return False
    kinds = flt.get("kinds")
    if kinds is not None and ev.kind not in kinds:
        return False
    since = flt.get("since")
    if since is not None and ev.created_at < since:
        return False
    until = flt.get("until")
    if until is not None and ev.created_at > until:
        return False
    for key, values in flt.items():
        if key.startswith("#"):
            letter = key[1:]
            if not any(len(t) >= 2 and t[0] == letter and t[1] in values for t in ev.tags):
                return False
    return True


class Model:
    """The events a correct relay stores after receiving ``events``, indexed for filters."""

    def __init__(self, events: Iterable[Ev]) -> None:
        events = list(events)
        deleted_ids: dict[tuple[str, str], str] = {}
        marks: dict[tuple[int, str, str], int] = {}
        for ev in events:
            if ev.kind != 5:
                continue
            for tag in ev.tags:
                if len(tag) < 2:
                    continue
                if tag[0] == "e":
                    deleted_ids[(tag[1], ev.pubkey)] = ev.id
                elif tag[0] == "a":
                    parts = tag[1].split(":", 2)
                    if len(parts) == 3 and parts[0].isdigit() and parts[1] == ev.pubkey:
                        key = (int(parts[0]), parts[1], parts[2])
                        marks[key] = max(marks.get(key, -1), ev.created_at)
        current: dict[tuple[int, str, str], Ev] = {}
        seen: set[str] = set()
        stored: list[Ev] = []
        self.removed: dict[str, str] = {}
        """Why each event sent but not stored is absent (for mismatch reports)."""
        for ev in events:
            if ev.id in seen:
                continue
            seen.add(ev.id)
            address = _address(ev)
            deletion = deleted_ids.get((ev.id, ev.pubkey)) if ev.kind != 5 else None
            if deletion is not None:
                self.removed[ev.id] = f"kind {ev.kind}, deleted by id by {deletion}"
                if address is not None:
                    marks[address] = max(marks.get(address, -1), ev.created_at)
                continue
            if address is None:
                stored.append(ev)
                continue
            best = current.get(address)
            if best is None or order_key(ev) < order_key(best):
                if best is not None:
                    self.removed[best.id] = f"kind {best.kind}, replaced by {ev.id}"
                current[address] = ev
            else:
                self.removed[ev.id] = f"kind {ev.kind}, replaced by {best.id}"
        for address, ev in current.items():
            if ev.created_at > marks.get(address, -1):
                stored.append(ev)
            else:
                self.removed[ev.id] = (
                    f"kind {ev.kind}, its address {ev.kind}:...:{address[2]} deleted up to"
                    f" created_at {marks[address]} (it has {ev.created_at})"
                )
        stored.sort(key=order_key)
        self.stored = stored
        self.by_id: dict[str, Ev] = {ev.id: ev for ev in stored}
        self.by_author: dict[str, list[Ev]] = defaultdict(list)
        self.by_kind: dict[int, list[Ev]] = defaultdict(list)
        self.by_tag: dict[tuple[str, str], list[Ev]] = defaultdict(list)
        for ev in stored:  # already in answer order, so every index list is too
            self.by_author[ev.pubkey].append(ev)
            self.by_kind[ev.kind].append(ev)
            letters = {(t[0], t[1]) for t in ev.tags if len(t) >= 2 and len(t[0]) == 1}
            for letter in letters:
                self.by_tag[letter].append(ev)

    def explain(self, event_id: str) -> str:
        """Why ``event_id`` is (not) in the stored set."""
        if event_id in self.by_id:
            return "stored"
        return self.removed.get(event_id, "never sent")

    def cause(self, event_id: str) -> str:
        """A short category of :meth:`explain`: stored, replaced, deleted by id, address
        deleted or never sent."""
        if event_id in self.by_id:
            return "stored"
        why = self.removed.get(event_id)
        if why is None:
            return "never sent"
        if "replaced by" in why:
            return "replaced"
        if "deleted by id" in why:
            return "deleted by id"
        return "address deleted"

    def __len__(self) -> int:
        return len(self.stored)

    def _candidates(self, flt: Mapping[str, Any]) -> Iterator[Ev]:
        """Events that may match, in answer order, each once: from the smallest index."""
        options: list[list[list[Ev]]] = []
        if "ids" in flt:
            found = [self.by_id[i] for i in flt["ids"] if i in self.by_id]
            options.append([sorted(found, key=order_key)])
        if "authors" in flt:
            options.append([self.by_author.get(a, []) for a in set(flt["authors"])])
        if "kinds" in flt:
            options.append([self.by_kind.get(k, []) for k in set(flt["kinds"])])
        for key, values in flt.items():
            if key.startswith("#"):
                options.append([self.by_tag.get((key[1:], v), []) for v in set(values)])
        if not options:
            return iter(self.stored)
        lists = min(options, key=lambda ls: sum(len(x) for x in ls))
        until = flt.get("until")
        if until is not None:
            # Skip what is newer than ``until``: each list is sorted by -created_at.
            lists = [x[bisect.bisect_left(x, -until, key=lambda e: -e.created_at) :] for x in lists]
        if len(lists) == 1:
            return iter(lists[0])
        return _unique(heapq.merge(*lists, key=order_key))

    def answer(self, flt: Mapping[str, Any], default_limit: int, max_limit: int) -> list[str]:
        """Ids of the events a relay with these limits returns before EOSE, in order."""
        limit = min(int(flt["limit"]), max_limit) if "limit" in flt else default_limit
        since = flt.get("since")
        out: list[str] = []
        for ev in self._candidates(flt):
            if len(out) >= limit:
                break
            if since is not None and ev.created_at < since:
                break  # candidates come newest first
            if matches(flt, ev):
                out.append(ev.id)
        return out


def _unique(events: Iterator[Ev]) -> Iterator[Ev]:
    last = None
    for ev in events:
        if ev.id != last:
            last = ev.id
            yield ev
