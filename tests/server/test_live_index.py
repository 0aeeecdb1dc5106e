"""The inverted subscription index, without a network or a database."""

from __future__ import annotations

import msgspec
import pytest

from relay.nostr.event import Event, decode_event
from relay.nostr.filters import Filter, parse_filter
from relay.nostr.limits import Limits
from relay.server.live import LiveIndex
from tests.signer import Keys


class Inbox:
    def __init__(self) -> None:
        self.got: list[tuple[str, str, bytes]] = []

    def deliver(self, sub_id: str, event_id: str, data: bytes, seq: int | None) -> bool:
        self.got.append((sub_id, event_id, data))
        return True


def event(**kw: object) -> tuple[Event, bytes]:
    raw = msgspec.json.encode(Keys(1).sign(**kw))  # type: ignore[arg-type]
    return decode_event(raw), raw


def f(d: dict[str, object]):  # type: ignore[no-untyped-def]
    return parse_filter(d, Limits())


def test_dispatch_matches_every_field_kind() -> None:
    index = LiveIndex()
    inbox = Inbox()
    ev, raw = event(kind=1301, content="", tags=[["t", "run"], ["d", "x"]], created_at=50)
    other_key = Keys(2).pubkey
    index.add(inbox, "by-id", (f({"ids": [ev.id]}),))
    index.add(inbox, "by-author", (f({"authors": [ev.pubkey]}),))
    index.add(inbox, "by-tag", (f({"#t": ["run"], "kinds": [1301]}),))
    index.add(inbox, "by-kind", (f({"kinds": [1301]}),))
    index.add(inbox, "all", (f({}),))
    index.add(inbox, "miss-author", (f({"authors": [other_key]}),))
    index.add(inbox, "miss-tag-and", (f({"#t": ["run"], "#d": ["y"]}),))
    index.add(inbox, "miss-time", (f({"kinds": [1301], "until": 49}),))
    index.add(inbox, "two-filters", (f({"kinds": [1]}), f({"#d": ["x"]})))
    assert index.dispatch(ev, raw) == 6
    got = {sub for sub, _, _ in inbox.got}
    assert got == {"by-id", "by-author", "by-tag", "by-kind", "all", "two-filters"}
    for sub, event_id, data in inbox.got:
        assert event_id == ev.id
        assert msgspec.json.decode(data) == ["EVENT", sub, msgspec.json.decode(raw)]


def test_replace_and_remove() -> None:
    index = LiveIndex()
    inbox = Inbox()
    ev, raw = event(kind=7, content="+")
    index.add(inbox, "s", (f({"kinds": [1]}),))
    index.add(inbox, "s", (f({"kinds": [7]}),))
    assert len(index) == 1
    assert index.dispatch(ev, raw) == 1
    index.remove(inbox, "s")
    assert len(index) == 0
    assert index.dispatch(ev, raw) == 0
    index.add(inbox, "a", (f({"kinds": [7]}),))
    index.add(inbox, "b", (f({"authors": [ev.pubkey]}),))
    index.remove_all(inbox, ["a", "b"])
    assert index.dispatch(ev, raw) == 0
    assert index._by_key == {}


def test_subscribers_are_separate() -> None:
    index = LiveIndex()
    one, two = Inbox(), Inbox()
    ev, raw = event(kind=1, content="x")
    index.add(one, "s", (f({"kinds": [1]}),))
    index.add(two, "s", (f({"kinds": [1]}),))
    index.remove(one, "s")
    assert index.dispatch(ev, raw) == 1
    assert one.got == [] and len(two.got) == 1


def test_equal_filter_lists_are_matched_once_per_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Subscriptions with equal filters share one tuple: one match per dispatch, every
    subscription still delivered to, and the shared entry gone with its last holder."""
    import relay.server.live as live

    calls: list[int] = []
    real = live.matches_any

    def counting(filters: tuple[Filter, ...], ev: Event) -> bool:
        calls.append(1)
        return real(filters, ev)

    monkeypatch.setattr(live, "matches_any", counting)
    counted: list[tuple[int, float | None]] = []
    index = LiveIndex(lambda sent, delay: counted.append((sent, delay)))
    inboxes = [Inbox() for _ in range(50)]
    for inbox in inboxes:
        index.add(inbox, "feed", (f({"kinds": [1301], "#t": ["run"]}),))
    index.add(inboxes[0], "other", (f({"kinds": [1301], "#t": ["run"], "since": 10}),))
    ev, raw = event(kind=1301, content="", tags=[["t", "run"]], created_at=50)
    assert index.dispatch(ev, raw, since=0.0) == 51
    assert len(calls) == 2  # two distinct filter lists
    assert all(len(inbox.got) == (2 if i == 0 else 1) for i, inbox in enumerate(inboxes))
    assert len(counted) == 1 and counted[0][0] == 51 and counted[0][1] is not None
    for inbox in inboxes[1:]:
        index.remove(inbox, "feed")
    assert len(index._shared) == 2
    index.remove_all(inboxes[0], ["feed", "other"])
    assert index._shared == {} and not index._users and index._by_key == {}
