"""Import and export (relay.archive) against a real PostgreSQL, with real and signed events."""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from relay.archive import (
    EPHEMERAL_REASON,
    Checked,
    ImportReport,
    LineOutcome,
    Rejection,
    check_line,
    export_events,
    import_events,
    parse_export_filter,
)
from relay.nostr.event import Event, decode_event
from relay.nostr.filters import Filter, matches
from relay.nostr.limits import Limits
from relay.nostr.replies import Reply, encode_reply
from relay.nostr.session import Session, StoreEvent
from relay.storage.postgres import Store as EventStore
from relay.storage.postgres import create_pool
from tests.signer import Keys

FIXTURES = Path(__file__).parents[2].parent / "shared/fixtures/real-events"
VALID = FIXTURES / "valid.jsonl"
INVALID = FIXTURES / "invalid.jsonl"


# -- helpers ---------------------------------------------------------------------------------


def jsonl(lines: Iterable[object]) -> bytes:
    """Lines of a file: str and bytes as they are, anything else JSON-encoded."""
    out = []
    for line in lines:
        if isinstance(line, bytes):
            out.append(line)
        elif isinstance(line, str):
            out.append(line.encode())
        else:
            out.append(msgspec.json.encode(line))
    return b"\n".join(out) + b"\n"


async def run_import(
    dsn: str, data: bytes | Path, *, limits: Limits | None = None, batch_size: int = 1_000
) -> tuple[ImportReport, dict[int, LineOutcome]]:
    outcomes: dict[int, LineOutcome] = {}

    def seen(outcome: LineOutcome) -> None:
        assert outcome.line not in outcomes
        outcomes[outcome.line] = outcome

    if isinstance(data, Path):
        with data.open("rb") as source:
            report = await import_events(
                dsn, source, limits=limits or Limits(), batch_size=batch_size, on_outcome=seen
            )
    else:
        report = await import_events(
            dsn,
            io.BytesIO(data),
            limits=limits or Limits(),
            batch_size=batch_size,
            on_outcome=seen,
        )
    assert report.lines == len(outcomes)
    assert report.accepted + report.duplicate + report.rejected == report.lines
    return report, outcomes


async def run_export(dsn: str, flt: Filter | None = None, **kwargs: Any) -> list[bytes]:
    out = io.BytesIO()
    count = await export_events(dsn, out, flt, **kwargs)
    lines = out.getvalue().splitlines()
    assert count == len(lines)
    return lines


def reasons(report: ImportReport) -> dict[str, int]:
    return {reason: entry.count for reason, entry in report.reasons.items()}


# -- an independent model of what the relay stores, for the expectations ---------------------

STORED = ("accepted", "")
DUPLICATE = ("duplicate", "duplicate: already have this event")
DELETED = ("rejected", "blocked: this event was deleted by its author")
ADDRESS_DELETED = (
    "rejected",
    "blocked: this address was deleted by its author after this version",
)
SUPERSEDED = ("rejected", "duplicate: a newer version of this address is stored")


def address(ev: dict[str, Any]) -> tuple[str, int, str] | None:
    kind = ev["kind"]
    if kind in (0, 3) or 10_000 <= kind < 20_000:
        return ev["pubkey"], kind, ""
    if 30_000 <= kind < 40_000:
        d = next((t[1] for t in ev["tags"] if len(t) >= 2 and t[0] == "d"), "")
        return ev["pubkey"], kind, d
    return None


class Model:
    """NIP-01 replacement and NIP-09 deletion, written plainly from the NIPs."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}  # id -> event, insertion = log order
        self.deleted_ids: set[tuple[str, str]] = set()
        self.deleted_up_to: dict[tuple[str, int, str], int] = {}

    def _drop_address(self, addr: tuple[str, int, str], up_to: int) -> None:
        self.deleted_up_to[addr] = max(self.deleted_up_to.get(addr, up_to), up_to)
        for event_id, row in list(self.rows.items()):
            if address(row) == addr and row["created_at"] <= up_to:
                del self.rows[event_id]

    def ingest(self, ev: dict[str, Any]) -> tuple[str, str]:
        if ev["id"] in self.rows:
            return DUPLICATE
        if (ev["id"], ev["pubkey"]) in self.deleted_ids:
            return DELETED
        addr = address(ev)
        if addr is not None:
            if self.deleted_up_to.get(addr, -1) >= ev["created_at"]:
                return ADDRESS_DELETED
            for row in list(self.rows.values()):
                if address(row) == addr:
                    if (row["created_at"], ev["id"]) > (ev["created_at"], row["id"]):
                        return SUPERSEDED
                    del self.rows[row["id"]]
        self.rows[ev["id"]] = ev
        if ev["kind"] == 5:
            for tag in ev["tags"]:
                if len(tag) < 2:
                    continue
                if tag[0] == "e" and re.fullmatch("[0-9a-f]{64}", tag[1]):
                    target = self.rows.get(tag[1])
                    if target and target["pubkey"] == ev["pubkey"] and target["kind"] != 5:
                        del self.rows[tag[1]]
                        target_addr = address(target)
                        if target_addr is not None:
                            self._drop_address(target_addr, target["created_at"])
                    self.deleted_ids.add((tag[1], ev["pubkey"]))
                elif tag[0] == "a":
                    parts = tag[1].split(":", 2)
                    if len(parts) == 3 and parts[1] == ev["pubkey"] and parts[0].isdigit():
                        coord = {
                            "kind": int(parts[0]),
                            "pubkey": parts[1],
                            "tags": [["d", parts[2]]],
                        }
                        coord_addr = address(coord)
                        if coord_addr is not None:
                            self._drop_address(coord_addr, ev["created_at"])
        return STORED


def expected_check(ev: dict[str, Any], now: int) -> str | None:
    """The rejection the relay's checks give an event of valid.jsonl (all are signed and
    hashed correctly, see SOURCES.md), or None when it reaches the store."""
    if any(not isinstance(x, str) for tag in ev["tags"] for x in tag):
        return "invalid: malformed event"
    if ev["created_at"] > now + 900:
        return "invalid: created_at is more than 900 seconds in the future"
    for tag in ev["tags"]:
        if len(tag) >= 2 and tag[0] == "expiration" and tag[1].isdigit():
            if int(tag[1]) <= now:
                return "invalid: event has expired"
            break
    if any(tag[:1] == ["-"] for tag in ev["tags"]):
        return "restricted: protected events (NIP-70) need AUTH, which this relay does not offer"
    if ev["kind"] == 22242:
        return "invalid: kind 22242 is sent with AUTH, not EVENT"
    if 20_000 <= ev["kind"] < 30_000:
        return EPHEMERAL_REASON
    return None


# -- the real fixture files ------------------------------------------------------------------


async def test_import_real_valid_events(db_dsn: str) -> None:
    now = int(time.time())
    lines = VALID.read_bytes().splitlines()
    model = Model()
    expected: dict[int, tuple[str, str]] = {}
    for number, line in enumerate(lines, start=1):
        ev = json.loads(line)
        why = expected_check(ev, now)
        expected[number] = ("rejected", why) if why else model.ingest(ev)

    report, outcomes = await run_import(db_dsn, VALID, batch_size=7)

    for number, outcome in outcomes.items():
        result, reason = expected[number]
        assert outcome.result == result, (number, outcome)
        assert outcome.reason.startswith(reason), (number, outcome)
    assert report.lines == len(lines) == 104
    assert report.accepted + report.duplicate + report.rejected == 104
    assert report.accepted == sum(1 for r in expected.values() if r == STORED)
    # What SOURCES.md says is in the file, and what the relay makes of it:
    by_reason = reasons(report)
    future = "invalid: created_at is more than 900 seconds in the future"
    assert by_reason[future] == 2  # the two NIP-22 examples in milliseconds (the third ...)
    malformed = [r for r in by_reason if r.startswith("invalid: malformed event: ")]
    assert len(malformed) == 1 and by_reason[malformed[0]] == 1  # ... has an int in a tag
    assert by_reason[EPHEMERAL_REASON] == sum(
        1
        for line in lines
        if json.loads(line)["kind"] in range(20_000, 30_000) and json.loads(line)["kind"] != 22242
    )
    assert report.reasons[future].lines == [
        n for n, line in enumerate(lines, start=1) if expected[n] == ("rejected", future)
    ]

    # Every event accepted and not deleted or replaced since is stored, as it was in the file.
    exported = await run_export(db_dsn)
    by_id = {json.loads(line)["id"]: line for line in lines}
    assert exported == [by_id[event_id] for event_id in model.rows]


async def test_import_real_invalid_events_rejects_each(db_dsn: str) -> None:
    records = [json.loads(line) for line in INVALID.read_bytes().splitlines()]
    data = jsonl(record["event"] for record in records)

    report, outcomes = await run_import(db_dsn, data)

    assert report.lines == len(records) == 41
    assert report.accepted == report.duplicate == 0
    assert all(o.result == "rejected" for o in outcomes.values())
    for number, record in enumerate(records, start=1):
        why, reason = record["why"], outcomes[number].reason
        if why == "bad sig":
            assert reason == "invalid: bad signature"
        elif why.startswith("bad id"):
            assert reason == "invalid: event id does not match the sha256 of its serialization"
        elif why in ("tags is null", "missing field (created_at)"):
            assert reason.startswith("invalid: malformed event: ")
        else:
            assert reason.startswith("invalid: "), (why, reason)
    assert await run_export(db_dsn) == []


def _session_verdict(line: bytes, limits: Limits, now: int) -> Checked | str:
    [action] = Session(limits).receive(f'["EVENT",{line.decode()}]', now)
    if isinstance(action, StoreEvent):
        return Checked(action.event, action.raw.decode())
    assert isinstance(action, Reply)
    frame = msgspec.json.decode(encode_reply(action))
    return str(frame[3] if frame[0] == "OK" else frame[1])


@pytest.mark.parametrize("limits", [Limits(), Limits(max_event_tags=3, max_content_bytes=50)])
def test_checks_are_the_relays(limits: Limits) -> None:
    """check_line gives every real event, valid or not, the relay's own verdict."""
    now = int(time.time())
    lines = VALID.read_bytes().splitlines()
    lines += [
        msgspec.json.encode(json.loads(record)["event"])
        for record in INVALID.read_bytes().splitlines()
    ]
    lines.append(msgspec.json.encode(Keys(3).sign(1, "x", [["-"]], created_at=now)))
    lines.append(msgspec.json.encode(Keys(3).sign(1, "x", [["expiration", "5"]], now)))
    for line in lines:
        ours = check_line(line, limits, now)
        relay = _session_verdict(line, limits, now)
        if isinstance(relay, Checked):
            if 20_000 <= relay.event.kind < 30_000:
                assert ours == Rejection(EPHEMERAL_REASON, relay.event.id)
            else:
                assert ours == relay
        else:
            assert isinstance(ours, Rejection)
            assert ours.reason == relay


# -- file order: replacement, deletion, duplicates, line shapes ------------------------------


@pytest.mark.parametrize("batch_size", [1, 3, 1_000])
async def test_import_applies_replacement_and_deletion_in_file_order(
    db_dsn: str, batch_size: int
) -> None:
    now = int(time.time())
    t = now - 10_000
    me, other = Keys(11), Keys(12)
    note = me.sign(1, "note a", created_at=t)
    old = me.sign(33401, "squat v1", [["d", "squat"]], created_at=t + 10)
    new = me.sign(33401, "squat v2", [["d", "squat"]], created_at=t + 20)
    mid = me.sign(33401, "squat v1.5", [["d", "squat"]], created_at=t + 15)
    del_note = me.sign(5, "", [["e", note["id"]]], created_at=t + 30)
    del_squat = me.sign(5, "", [["a", f"33401:{me.pubkey}:squat"]], created_at=t + 40)
    theirs = other.sign(1, "not yours", created_at=t)
    del_theirs = me.sign(5, "", [["e", theirs["id"]]], created_at=t + 50)
    c, d = me.sign(1, "c", created_at=t + 1), me.sign(1, "d", created_at=t + 2)
    profile1 = me.sign(0, '{"name":"a"}', created_at=t + 1)
    profile2 = me.sign(0, '{"name":"b"}', created_at=t + 2)
    bad_sig = dict(me.sign(1, "tampered", created_at=t), sig="00" * 64)
    data = jsonl(
        [
            note,  # 1
            old,  # 2
            new,  # 3 replaces 2
            old,  # 4 older than what is stored
            del_note,  # 5
            note,  # 6 deleted
            del_squat,  # 7 deletes 3
            mid,  # 8 address deleted after it
            theirs,  # 9
            del_theirs,  # 10 stored, deletes nothing
            "",  # 11
            "garbage",  # 12
            ["EVENT", "sub1", c],  # 13
            b"  " + msgspec.json.encode(["EVENT", d]) + b"\r",  # 14
            ["REQ", "x", {}],  # 15
            profile1,  # 16
            profile2,  # 17 replaces 16
            me.sign(20_001, "ephemeral", created_at=now),  # 18
            me.sign(1, "protected", [["-"]], created_at=now),  # 19
            me.sign(1, "gone", [["expiration", str(now - 10)]], created_at=t),  # 20
            bad_sig,  # 21
            c,  # 22 duplicate
            '{"id": "' + "ab" * 32 + '", "pubkey": ',  # 23
            "[1, 2",  # 24
            ["EVENT"],  # 25
            "   ",  # 26
            '{"id": "' + "ab" * 32 + '", "kind": "one"}',  # 27
        ]
    )

    report, outcomes = await run_import(db_dsn, data, batch_size=batch_size)

    got = {n: (o.result, o.reason) for n, o in outcomes.items() if n != 27}
    assert got == {
        1: STORED,
        2: STORED,
        3: STORED,
        4: SUPERSEDED,
        5: STORED,
        6: DELETED,
        7: STORED,
        8: ADDRESS_DELETED,
        9: STORED,
        10: STORED,
        12: ("rejected", "malformed line: not a JSON object or an EVENT message"),
        13: STORED,
        14: STORED,
        15: ("rejected", "malformed line: not an EVENT message"),
        16: STORED,
        17: STORED,
        18: ("rejected", EPHEMERAL_REASON),
        19: (
            "rejected",
            "restricted: protected events (NIP-70) need AUTH, which this relay does not offer",
        ),
        20: ("rejected", "invalid: event has expired"),
        21: ("rejected", "invalid: bad signature"),
        22: DUPLICATE,
        23: ("rejected", "invalid: malformed event: not a JSON object"),
        24: ("rejected", "malformed line: not valid JSON"),
        25: (
            "rejected",
            'malformed line: an EVENT message is ["EVENT", <event>]'
            ' or ["EVENT", <subscription id>, <event>]',
        ),
    }
    assert outcomes[23].event_id is None
    assert outcomes[27].event_id == "ab" * 32  # the id it claims, as in the relay's OK
    assert outcomes[27].reason.startswith("invalid: malformed event: Expected `int`")
    assert (report.lines, report.blank) == (25, 2)
    assert (report.accepted, report.duplicate, report.rejected) == (11, 1, 13)

    stored = [decode_event(line) for line in await run_export(db_dsn)]
    assert [e.id for e in stored] == [
        e["id"] for e in (del_note, del_squat, theirs, del_theirs, c, d, profile2)
    ]


async def test_second_import_reports_duplicates(db_dsn: str) -> None:
    first, _ = await run_import(db_dsn, VALID)
    second, outcomes = await run_import(db_dsn, VALID)
    assert second.accepted == 0
    assert second.duplicate == first.accepted
    assert reasons(second) == reasons(first)
    assert {o.reason for o in outcomes.values() if o.result == "duplicate"} == {
        "duplicate: already have this event"
    }


async def test_report_format(db_dsn: str) -> None:
    now = int(time.time())
    keys = Keys(21)
    bad = [dict(keys.sign(1, f"n{i}", created_at=now), sig="00" * 64) for i in range(7)]
    good = keys.sign(1, "ok", created_at=now)
    report, _ = await run_import(db_dsn, jsonl([good, *bad, "", good, "x"]))
    assert report.format("in.jsonl") == "\n".join(
        [
            "in.jsonl: 10 lines (1 blank skipped)",
            "accepted: 1",
            "duplicate: 1",
            "rejected: 8",
            "  invalid: bad signature: 7 (lines 2, 3, 4, 5, 6, ...)",
            "  malformed line: not a JSON object or an EVENT message: 1 (line 11)",
        ]
    )


async def test_lines_too_large_are_rejected_without_stopping(db_dsn: str) -> None:
    now = int(time.time())
    keys = Keys(31)
    limits = Limits(max_message_bytes=2_000)
    medium = keys.sign(1, "m" * 1_900, created_at=now)  # event fits, the frame does not
    huge = keys.sign(1, "h" * 300_000, created_at=now)  # not even read whole
    after = keys.sign(1, "after", created_at=now)
    report, outcomes = await run_import(db_dsn, jsonl([medium, huge, after]), limits=limits)
    reason = "invalid: message is larger than 2000 bytes"
    assert (outcomes[1].reason, outcomes[2].reason) == (reason, reason)
    assert outcomes[3].result == "accepted"
    assert report.reasons[reason].lines == [1, 2]


async def test_byte_order_mark_and_crlf(db_dsn: str) -> None:
    now = int(time.time())
    keys = Keys(32)
    events = [keys.sign(1, f"crlf {i}", created_at=now) for i in range(3)]
    data = b"\xef\xbb\xbf" + b"\r\n".join(msgspec.json.encode(e) for e in events) + b"\r\n"
    report, _ = await run_import(db_dsn, data)
    assert (report.accepted, report.rejected) == (3, 0)
    assert await run_export(db_dsn) == [msgspec.json.encode(e) for e in events]


async def test_invalid_utf8_line(db_dsn: str) -> None:
    _, outcomes = await run_import(db_dsn, b'{"id": "\xff"}\n')
    assert outcomes[1].reason == "malformed line: not valid UTF-8"


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux /proc")
async def test_read_error_ends_the_import(db_dsn: str) -> None:
    with open("/proc/self/mem", "rb") as source:  # opens, but reading offset 0 fails (EIO)
        report = await import_events(db_dsn, source, limits=Limits())
    assert report.read_error == "Input/output error"
    assert report.lines == 0


async def test_created_at_window_follows_the_configured_limits(db_dsn: str) -> None:
    now = int(time.time())
    keys = Keys(33)
    old = keys.sign(1, "from 2020", created_at=1_600_000_000)
    report, outcomes = await run_import(
        db_dsn, jsonl([old]), limits=Limits(created_at_past_seconds=86_400)
    )
    assert outcomes[1].reason == "invalid: created_at is more than 86400 seconds in the past"
    report, _ = await run_import(db_dsn, jsonl([old]), limits=Limits())
    assert report.accepted == 1
    assert now > 1_600_000_000


# -- export ----------------------------------------------------------------------------------


def _events(lines: list[bytes]) -> list[Event]:
    return [decode_event(line) for line in lines]


async def test_export_filters(db_dsn: str) -> None:
    await run_import(db_dsn, VALID)
    stored = await run_export(db_dsn)
    events = _events(stored)
    limits = Limits()

    def expect(flt: Filter) -> list[bytes]:
        return [line for line, e in zip(stored, events, strict=True) if matches(flt, e)]

    for text in [
        '{"kinds":[33401]}',
        '{"kinds":[1, 1301]}',
        '{"#t":["powr"]}',
        '{"#t":["fitness"], "kinds":[1]}',
        '{"authors":["55127fc9e1c03c6b459a3bab72fdb99def1644c5f239bdd09f3e5fb401ed9b21"]}',
        '{"since":1742703805, "until":1742786395}',
        '{"ids":["8b79bfa985e3b5e9dfbbddca3b8f5c96b16f52e514929f0d7631c6b952e37f70"]}',
    ]:
        flt = parse_export_filter(text, limits)
        got = await run_export(db_dsn, flt)
        assert got == expect(flt), text
        assert got, text
        assert await run_export(db_dsn, flt, page_size=2) == got
    [line] = await run_export(db_dsn, parse_export_filter('{"kinds":[33401]}', limits))
    assert line in VALID.read_bytes().splitlines()


async def test_export_limit_keeps_the_newest_in_log_order(db_dsn: str) -> None:
    await run_import(db_dsn, VALID)
    stored = await run_export(db_dsn)
    events = _events(stored)
    kind1 = [e for e in events if e.kind == 1]
    for limit in (1, 3, 10, len(kind1), len(kind1) + 5):
        flt = parse_export_filter(json.dumps({"kinds": [1], "limit": limit}), Limits())
        newest = sorted(kind1, key=lambda e: (-e.created_at, e.id))[:limit]
        want = [e.id for e in events if e in newest]
        got = [e.id for e in _events(await run_export(db_dsn, flt, page_size=4))]
        assert got == want
    flt = parse_export_filter('{"limit":0}', Limits())
    assert await run_export(db_dsn, flt) == []
    # The relay's max_limit does not cap an export.
    flt = parse_export_filter('{"limit":100000}', Limits(max_limit=5))
    assert await run_export(db_dsn, flt) == stored


async def test_export_leaves_out_expired_events(db_dsn: str) -> None:
    now = int(time.time())
    keys = Keys(41)
    lasting = keys.sign(1, "lasting", created_at=now)
    fleeting = keys.sign(1, "fleeting", [["expiration", str(now + 60)]], created_at=now)
    await run_import(db_dsn, jsonl([lasting, fleeting]))
    assert len(await run_export(db_dsn)) == 2
    assert await run_export(db_dsn, now=now + 120) == [msgspec.json.encode(lasting)]


async def test_export_is_paged(db_dsn: str) -> None:
    now = int(time.time())
    keys = Keys(42)
    events = [keys.sign(1, f"page {i}", created_at=now - i) for i in range(25)]
    await run_import(db_dsn, jsonl(events), batch_size=4)
    want = [msgspec.json.encode(e) for e in events]
    for page_size in (1, 5, 24, 25, 26, 1_000):
        assert await run_export(db_dsn, page_size=page_size) == want


def test_parse_export_filter_errors() -> None:
    with pytest.raises(Exception, match="not valid JSON"):
        parse_export_filter("{kinds", Limits())
    with pytest.raises(Exception, match="must be a JSON object"):
        parse_export_filter("[1]", Limits())
    with pytest.raises(Exception, match="unsupported: search"):
        parse_export_filter('{"search":"x"}', Limits())


# -- round trip ------------------------------------------------------------------------------


async def _store_raw(dsn: str, raws: list[str]) -> None:
    """Store events the way the relay does (its writer), raw text as a client sent it."""
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        store = EventStore(pool, default_limit=100)
        await store.ingest([decode_event(r.encode()) for r in raws], raws)
    finally:
        await pool.close()


async def test_round_trip(db_dsn: str, other_dsn: str) -> None:
    now = int(time.time())
    keys = Keys(51)
    await run_import(db_dsn, VALID)
    follow_up = [
        keys.sign(30078, "v1", [["d", "app"]], created_at=now - 100),
        keys.sign(30078, "v2", [["d", "app"]], created_at=now - 50),
        keys.sign(1, "to delete", created_at=now - 40),
    ]
    follow_up.append(keys.sign(5, "", [["e", follow_up[2]["id"]]], created_at=now - 30))
    follow_up.append(keys.sign(1, "expires later", [["expiration", str(now + 3600)]], now))
    await run_import(db_dsn, jsonl(follow_up))
    # A client may send an event pretty-printed: its stored raw JSON holds line breaks.
    pretty = msgspec.json.format(
        msgspec.json.encode(keys.sign(1, "pretty", created_at=now)), indent=2
    ).decode()
    assert "\n" in pretty
    await _store_raw(db_dsn, [pretty])

    first = await run_export(db_dsn)
    report, _ = await run_import(other_dsn, b"\n".join(first) + b"\n", batch_size=10)
    assert (report.accepted, report.duplicate, report.rejected) == (len(first), 0, 0)
    second = await run_export(other_dsn)

    assert second == first
    assert first[-1] == pretty.replace("\n", " ").encode()
    assert msgspec.json.decode(first[-1]) == msgspec.json.decode(pretty)
    # The deletion came along, and still refuses its target.
    _, outcomes = await run_import(other_dsn, jsonl([follow_up[2]]))
    assert (outcomes[1].result, outcomes[1].reason) == DELETED


async def test_import_callback_sees_accepted_ids(db_dsn: str) -> None:
    seen: list[str | None] = []
    now = int(time.time())
    events = [Keys(61).sign(1, f"cb {i}", created_at=now) for i in range(3)]
    callback: Callable[[LineOutcome], None] = lambda o: seen.append(o.event_id)  # noqa: E731
    await import_events(db_dsn, io.BytesIO(jsonl(events)), limits=Limits(), on_outcome=callback)
    assert seen == [e["id"] for e in events]


async def test_export_limit_with_several_tag_letters(db_dsn: str) -> None:
    now = int(time.time())
    keys = Keys(43)
    both = [
        keys.sign(1, f"both {i}", [["t", "run"], ["l", "km"]], created_at=now - 100 + i)
        for i in range(4)
    ]
    # Newer events matching only one of the letters (either one) must not push them out.
    only_l = [keys.sign(1, f"l {i}", [["l", "km"]], created_at=now - 10 + i) for i in range(4)]
    only_t = [keys.sign(1, f"t {i}", [["t", "run"]], created_at=now - 10 + i) for i in range(4)]
    await run_import(db_dsn, jsonl([*both, *only_l, *only_t]))
    flt = parse_export_filter('{"#t":["run"],"#l":["km"],"limit":2}', Limits())
    got = [e.id for e in _events(await run_export(db_dsn, flt))]
    assert got == [both[2]["id"], both[3]["id"]]
