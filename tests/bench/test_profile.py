"""bench.profile.summarise over a small hand-written collapsed-stack file."""

from __future__ import annotations

from bench.profile import summarise

_P = 'process 10:"python -m relay serve"'
_TRUNK = "<module> (relay/__main__.py:5);main (relay/cli.py:40)"

# 20 samples: 19 in process 10 with its entry frames, one partial stack in a child process,
# a recursive function, and a line that is not a stack.
COLLAPSED = f"""\
{_P};{_TRUNK};run (relay/app.py:10);handle (relay/conn.py:20);verify (relay/verify.py:30) 10
{_P};{_TRUNK};run (relay/app.py:10);handle (relay/conn.py:21);encode (relay/msg.py:5) 6
{_P};{_TRUNK};run (relay/app.py:11) 2
{_P};{_TRUNK};run (relay/app.py:10);walk (relay/tree.py:7);walk (relay/tree.py:9);walk (relay/tree.py:9) 1
{_P};process 11:"worker";handle (relay/conn.py:22);verify (relay/verify.py:31) 1

not a stack line
"""  # noqa: E501


def _rows(rows: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [(r["function"], r["where"], r["samples"], r["pct"]) for r in rows]


def test_summarise_self_inclusive_and_entry_frames() -> None:
    s = summarise(COLLAPSED)
    assert s["samples"] == 20
    assert s["processes"] == 2
    assert s["unparsed_lines"] == 1
    # Self: the innermost frame; where = the line most of its samples were on.
    assert _rows(s["self"]) == [
        ("verify", "relay/verify.py:30", 11, 55.0),
        ("encode", "relay/msg.py:5", 6, 30.0),
        ("run", "relay/app.py:11", 2, 10.0),
        ("walk", "relay/tree.py:9", 1, 5.0),
    ]
    # Inclusive: once per sample (walk recursed three deep: 1 sample, not 3). Functions on
    # as many stacks as the most frequent one are entry frames, listed apart.
    assert s["entry"] == [
        "<module> (relay/__main__.py:5)",
        "main (relay/cli.py:40)",
        "run (relay/app.py:10)",
    ]
    assert s["entry_pct"] == 95.0
    assert _rows(s["inclusive"]) == [
        ("handle", "relay/conn.py:20", 17, 85.0),
        ("verify", "relay/verify.py:30", 11, 55.0),
        ("encode", "relay/msg.py:5", 6, 30.0),
        ("walk", "relay/tree.py:9", 1, 5.0),
    ]


def test_summarise_top_and_empty() -> None:
    s = summarise(COLLAPSED, top=2)
    assert [r["function"] for r in s["self"]] == ["verify", "encode"]
    assert [r["function"] for r in s["inclusive"]] == ["handle", "verify"]
    empty = summarise("")
    assert empty["samples"] == 0 and empty["self"] == [] and empty["inclusive"] == []
    assert empty["entry"] == [] and empty["entry_pct"] == 0.0
