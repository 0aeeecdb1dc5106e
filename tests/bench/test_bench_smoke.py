"""The benchmark harness's own checks: generated events verify, the expected-answer model
follows NIP-01, queries and partitions are sound; then a small run of the harness itself
against fitrelay on the test PostgreSQL (no nostr-relay needed)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.generate import (
    END_TIME,
    PAGINATION_END,
    STREAM_TAG,
    generate_events,
    generate_pagination,
    pagination_pubkey,
)
from bench.ingest import partition_by_author
from bench.model import Ev, Model, decode_events
from bench.profile import find_py_spy
from bench.query import MIXED_SHAPES, SHAPES, expected_answers, make_queries
from bench.report import update_doc
from relay.nostr.event import canonical_bytes
from relay.nostr.verify import verify_signature

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

_HMS = re.compile(r"\d\d:\d\d:\d\d\Z")
_COORD = re.compile(r"33401:[0-9a-f]{64}:.+\Z")


def _generate(n: int, *, stream: bool = False, seed: int = 3) -> list[dict[str, Any]]:
    out = io.BytesIO()
    assert generate_events(n, seed, 50, out, stream=stream) == n
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_generated_events_have_valid_ids_and_signatures() -> None:
    events = _generate(200) + _generate(40, stream=True)
    for ev in events:
        serial = canonical_bytes(
            ev["pubkey"], ev["created_at"], ev["kind"], ev["tags"], ev["content"]
        )
        assert hashlib.sha256(serial).hexdigest() == ev["id"]
        assert verify_signature(ev["id"], ev["pubkey"], ev["sig"]), ev
    assert len({ev["id"] for ev in events}) == len(events)


def test_generated_mix_speaks_both_workout_dialects() -> None:
    events = _generate(400)
    kinds = {ev["kind"] for ev in events}
    assert {0, 1, 3, 7, 1301, 33401, 33402} <= kinds
    records = [ev for ev in events if ev["kind"] == 1301]
    runstr = [ev for ev in records if ["exercise", "running"] in ev["tags"]]
    nip101e = [
        ev for ev in records if any(t[0] == "exercise" and _COORD.match(t[1]) for t in ev["tags"])
    ]
    assert runstr and nip101e
    for ev in runstr:
        tags = {t[0]: t for t in ev["tags"]}
        assert _HMS.match(tags["duration"][1]) and tags["distance"][2] in ("km", "mi")
    assert all(ev["created_at"] < END_TIME for ev in events)


def test_generation_is_deterministic_and_stream_is_disjoint() -> None:
    assert _generate(60) == _generate(60)
    main, stream = _generate(300), _generate(100, stream=True)
    assert not {ev["pubkey"] for ev in main} & {ev["pubkey"] for ev in stream}
    stream_ids, stream_keys = {ev["id"] for ev in stream}, {ev["pubkey"] for ev in stream}
    for ev in stream:
        assert ev["created_at"] > END_TIME
        if ev["kind"] == 7:
            assert all(t[1] in stream_ids | stream_keys for t in ev["tags"] if t[0] in "ep")
        else:
            assert ["t", STREAM_TAG] in ev["tags"]


A, B = "a" * 64, "b" * 64


def _ev(n: int, kind: int, created_at: int, tags: list[list[str]], pubkey: str = A) -> Ev:
    return Ev(id=f"{n:064x}", pubkey=pubkey, created_at=created_at, kind=kind, tags=tags)


def test_model_applies_replacement_deletion_and_ordering() -> None:
    note1, note2, note3 = (
        _ev(1, 1, 10, [["t", "x"]]),
        _ev(2, 1, 20, [["t", "x"]]),
        _ev(3, 1, 20, []),
    )
    meta_old, meta_new = _ev(4, 0, 5, []), _ev(5, 0, 7, [])
    x1, x2 = _ev(6, 30003, 10, [["d", "x"]]), _ev(7, 30003, 20, [["d", "x"]])
    y1, y2 = _ev(8, 30003, 10, [["d", "y"]]), _ev(9, 30003, 40, [["d", "y"]])
    tie_hi, tie_lo = _ev(0x21, 33401, 50, [["d", "t"]]), _ev(0x20, 33401, 50, [["d", "t"]])
    z1, z2, z3 = (_ev(10 + i, 33402, t, [["d", "z"]]) for i, t in enumerate((10, 20, 25)))
    w1 = _ev(40, 30004, 10, [["d", "w"]])
    deletions = [
        _ev(100, 5, 11, [["e", note1.id]]),
        _ev(101, 5, 21, [["e", note2.id]], pubkey=B),  # not the author: no effect
        _ev(102, 5, 15, [["a", f"30003:{A}:x"]]),
        _ev(103, 5, 30, [["a", f"30003:{A}:y"]]),
        _ev(104, 5, 21, [["e", z2.id]]),  # by id of a version: up to its created_at
        _ev(105, 5, 12, [["a", f"30004:{A}:w"]]),
    ]
    sent = [note1, note2, note3, meta_old, meta_new, x1, x2, y1, y2, tie_hi, tie_lo, z1, z2, z3, w1]
    model = Model(sent + deletions)
    stored = {ev.id for ev in model.stored}
    assert stored == {
        note2.id, note3.id, meta_new.id, x2.id, y2.id, tie_lo.id, z3.id, *(d.id for d in deletions)
    }  # fmt: skip
    assert "deleted by id" in model.explain(note1.id) and "replaced" in model.explain(x1.id)
    assert model.explain("f" * 64) == "never sent"
    causes = [model.cause(e.id) for e in (note1, x1, w1, note2, meta_old)]
    assert causes == ["deleted by id", "replaced", "address deleted", "stored", "replaced"]
    # Newest first, lowest id first on a tie; limits and inclusive since/until.
    assert model.answer({"kinds": [1]}, 500, 5000) == [note2.id, note3.id]
    assert model.answer({"kinds": [1], "limit": 1}, 500, 5000) == [note2.id]
    assert model.answer({"kinds": [1]}, 1, 5000) == [note2.id]
    assert model.answer({"#t": ["x"], "since": 20, "until": 20}, 500, 5000) == [note2.id]
    assert model.answer({"#t": ["x"], "until": 19}, 500, 5000) == []
    assert model.answer({"authors": [A], "#d": ["x", "y"]}, 500, 5000) == [y2.id, x2.id]
    assert model.answer({"ids": [note1.id, note2.id, z3.id]}, 500, 5000) == [z3.id, note2.id]


def test_queries_partitions_and_doc_markers(tmp_path: Path) -> None:
    lines = [json.dumps(ev).encode() for ev in _generate(300)]
    events = decode_events(lines)
    queries = make_queries(events, seed=3, per_shape=10)
    assert set(queries) == set(SHAPES)
    assert all(len(q) == 10 for shape, q in queries.items() if shape != "mixed")
    assert len(queries["mixed"]) == 10 * len(MIXED_SHAPES) and "feed" not in MIXED_SHAPES
    follow_lists = {
        tuple(dict.fromkeys(t[1] for t in ev.tags if t[0] == "p"))[:500]
        for ev in events
        if ev.kind == 3
    }
    assert follow_lists, "the sample has no contact list: the feed check would prove nothing"
    for flt in queries["feed"]:
        assert tuple(flt["authors"]) in follow_lists and flt["kinds"] == [1, 1301]
    assert [q for q in queries["mixed"] if "ids" in q][:2] == queries["mixed"][:10:9]
    model = Model(events)
    answers = expected_answers(model, queries, 500, 5000)
    for flt, ids in zip(queries["ids"], answers["ids"], strict=True):
        assert set(ids) <= set(flt["ids"])
    assert any(answers["address"]) and any(answers["authors_kinds"])
    # However many stream events a relay stores, no query's answer changes.
    stream = decode_events(json.dumps(ev).encode() for ev in _generate(300, stream=True))
    assert expected_answers(Model(events + stream), queries, 500, 5000) == answers

    # Time windows end before the stream begins, even around the newest main event.
    last = [_ev(1, 1, END_TIME - 10, [["t", "x"]])]
    assert all(f["until"] < END_TIME for f in make_queries(last, 1, 50)["kind_window"])

    pubkeys = [ev.pubkey for ev in events]
    parts = partition_by_author(pubkeys, 4)
    assert sorted(i for p in parts for i in p) == list(range(len(events)))
    owners = {pubkeys[i]: c for c, p in enumerate(parts) for i in p}
    assert all(owners[pubkeys[i]] == c for c, p in enumerate(parts) for i in p)
    assert all(p == sorted(p) for p in parts)

    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nprose\n")
    update_doc(doc, "n=5", "table one")
    update_doc(doc, "n=7", "table two")
    doc.write_text(doc.read_text() + "\n## Other\n")
    update_doc(doc, "n=5", "table three")
    update_doc(doc, "n=9", "table four")
    text = doc.read_text()
    assert "prose" in text and "table two" in text and "table three" in text
    assert "table one" not in text and text.count("bench:begin n=5") == 1
    assert text.index("table four") < text.index("## Other")  # beside the other tables


def test_pagination_set_is_one_author_older_than_the_main_set() -> None:
    out = io.BytesIO()
    assert generate_pagination(30, 3, out) == 30
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert {ev["pubkey"] for ev in events} == {pagination_pubkey(3)}
    assert [ev["created_at"] for ev in events] == [PAGINATION_END - i for i in range(30)]
    assert all(ev["kind"] == 1 and ev["tags"] == [] for ev in events)
    for ev in events[:5]:
        assert verify_signature(ev["id"], ev["pubkey"], ev["sig"])
    # No query shape's answer changes with them stored (the time windows start later).
    main = decode_events(json.dumps(ev).encode() for ev in _generate(300))
    queries = make_queries(main, seed=3, per_shape=10)
    notes = decode_events(json.dumps(ev).encode() for ev in events)
    answers = expected_answers(Model(main), queries, 500, 5000)
    assert expected_answers(Model(main + notes), queries, 500, 5000) == answers


def test_quick_run_with_pagination_and_profiles(tmp_path: Path, server_dsn: str) -> None:
    """A small end-to-end run against fitrelay: ingest, queries, deep pagination, and the
    py-spy profiles when py-spy is installed."""
    py_spy = find_py_spy()
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "bench", "--quick", "--against", "none", "--no-doc"]
    cmd += ["--events", "2000", "--phases", "ingest,query,pagination,fanout"]
    cmd += ["--subscribers", "40", "--fanout-events", "5", "--fanout-interval", "0.01"]
    cmd += ["--queries-per-shape", "10", "--pagination-events", "3000"]
    cmd += ["--pagination-limit", "200", "--gen-workers", "2", "--dsn", server_dsn]
    cmd += ["--cache-dir", str(tmp_path / "cache"), "--results-dir", str(results)]
    cmd.append("--profile")  # without py-spy the run goes on and says why it has no profiles
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = results.glob("*.json")
    run = json.loads(path.read_text())
    t = run["targets"]["fitrelay"]
    assert "error" not in t, t["error"]
    assert t["ingest"]["accepted"] == 2000
    for shape in SHAPES:
        count = 10 * len(MIXED_SHAPES) if shape == "mixed" else 10
        assert t["query"][shape]["exact"] == t["query"][shape]["queries"] == count, shape
    # Every event was stored through this relay just before: the mirror holds them all and,
    # settled after the load, answers every REQ (the event cache is not consulted then).
    held = t["query"]["event_cache"]
    assert held["mirror_answers"] > 0 and held["mirror_declined"] == 0, held
    assert held["misses"] == 0, held
    assert "REQs were answered from memory without PostgreSQL" in done.stdout

    f = t["fanout"]
    assert f["expected_deliveries"] == f["delivered"] == 40 * 5 and f["duplicates"] == 0, f
    assert f["failed_connections"] == 0 and f["error"] is None, f

    w = t["pagination"]
    assert w["load"]["loaded"] == w["expected"] == w["events"] == 3000
    assert w["exact"] and w["mismatches"] == 0 and w["errors"] == 0
    assert w["pages"] == 16  # 15 full pages, then the empty one that finds the end
    assert w["pages_per_tenth"] == 1
    assert w["first_pages"]["p50_ms"] > 0 and w["last_over_first_p50"] > 0
    assert "deep pagination 3,000 notes, limit 200" in done.stdout

    run_dir = path.with_suffix("")
    if py_spy is None:
        assert "Profiles were asked for" in done.stdout
        pytest.skip("py-spy is not installed: the run went without profiles")
    for phase in ("ingest", "query", "pagination"):
        assert (run_dir / f"fitrelay-{phase}.txt").exists(), phase
        profile = t["profiles"][phase]
        assert "error" not in profile, profile["error"]
    assert t["profiles"]["ingest"]["samples"] > 0
    assert t["profiles"]["ingest"]["self"]
    assert "Where the relay's time goes" in done.stdout
