"""Results: the machine, the JSON file, and the Markdown tables in ``docs/benchmarks.md``."""

from __future__ import annotations

import json
import math
import os
import platform
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg

from bench.query import SHAPES

__all__ = ["machine_info", "render_markdown", "update_doc", "write_json"]

ROOT = Path(__file__).resolve().parents[1]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return float("nan")


def _git(src: Path) -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=src, capture_output=True, text=True
        ).stdout.strip()
        # Only what the relay runs: the harness's own files do not change its figures.
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "relay", "indexer", "sql", "pyproject.toml"],
            cwd=src,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    if not head:
        return f"unknown ({src} is not a git checkout)"
    return f"{head}{' with uncommitted changes to the relay' if dirty else ''}"


async def machine_info(admin_dsn: str, src: Path = ROOT) -> dict[str, Any]:
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "ram_gib": _mem_total_gib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": list(os.getloadavg()),
        "fitrelay_commit": _git(src),
        "fitrelay_src": str(src),
    }
    conn = await asyncpg.connect(admin_dsn)
    try:
        info["postgresql"] = await conn.fetchval("SHOW server_version")
        info["postgresql_settings"] = {
            name: await conn.fetchval(f"SHOW {name}")
            for name in ("shared_buffers", "synchronous_commit", "fsync", "max_connections")
        }
    finally:
        await conn.close()
    return info


def write_json(results: dict[str, Any], directory: Path, stamp: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stamp}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return path


# -- Markdown ---------------------------------------------------------------------------------


def _get(tree: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) < 1:
            return f"{value:.2f}"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:,.{digits}f}"
    return str(value)


def _ratio(a: Any, b: Any) -> str:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not b:
        return "-"
    r = a / b
    return f"{r:.2f}" if r < 10 else f"{r:.1f}"


Row = tuple[str, Callable[[dict[str, Any]], Any]]
_NO_RATIO = (
    "  accepted",
    "  refused (OK false)",
    "  delivered %",
    "  relay RSS before → after MB",
    "  benchmark client's CPU ms per event",
    "  last ÷ first, p50 (flat = 1)",
    "  last ÷ first, p99",
    "  notes walked / loaded",
)


def _rows(results: dict[str, Any]) -> list[Row]:
    args = results["meta"]["args"]
    n = results["generation"]["events"]
    p, w = args["publishers"], args["window"]
    sw = args["stopwait_publishers"]

    def cpu_per_event(key: str) -> Callable[[dict[str, Any]], Any]:
        def get(t: dict[str, Any]) -> Any:
            cpu, sent = _get(t, "ingest", key), _get(t, "ingest", "answered")
            return round(1000 * cpu / sent, 3) if cpu is not None and sent else None

        return get

    def mb(path: tuple[str, ...]) -> Callable[[dict[str, Any]], Any]:
        return lambda t: round(v / 1e6, 1) if (v := _get(t, *path)) is not None else None

    return [
        (f"ingest {p}x{w} in flight: events/s ↑", lambda t: _get(t, "ingest", "events_per_s")),
        ("  OK latency p50 ms ↓", lambda t: _get(t, "ingest", "ok_latency", "p50_ms")),
        ("  OK latency p99 ms ↓", lambda t: _get(t, "ingest", "ok_latency", "p99_ms")),
        (f"  load time for {n:,} events s ↓", lambda t: _get(t, "ingest", "seconds")),
        ("  relay CPU ms per event ↓", cpu_per_event("relay_cpu_s")),
        ("  PostgreSQL backends' CPU ms per event ↓", cpu_per_event("postgres_cpu_s")),
        (
            "  indexer lag behind commit p99 ms ↓",
            lambda t: _get(t, "ingest", "indexer_lag", "p99_ms"),
        ),
        ("  benchmark client's CPU ms per event", cpu_per_event("client_cpu_s")),
        ("  accepted", lambda t: _get(t, "ingest", "accepted")),
        ("  refused (OK false)", lambda t: sum((_get(t, "ingest", "rejected") or {}).values())),
        ("database size after load MB ↓", mb(("database_bytes",))),
        (f"ingest stop-and-wait {sw}x1: events/s ↑", lambda t: _get(t, "stopwait", "events_per_s")),
        ("  OK latency p50 ms ↓", lambda t: _get(t, "stopwait", "ok_latency", "p50_ms")),
        ("  OK latency p99 ms ↓", lambda t: _get(t, "stopwait", "ok_latency", "p99_ms")),
        (
            f"fan-out {args['subscribers']:,} subs: publish→delivery p50 ms ↓",
            lambda t: _get(t, "fanout", "publish_to_delivery", "p50_ms"),
        ),
        (
            "  publish→delivery p99 ms ↓",
            lambda t: _get(t, "fanout", "publish_to_delivery", "p99_ms"),
        ),
        ("  OK→delivery p50 ms ↓", lambda t: _get(t, "fanout", "ok_to_delivery", "p50_ms")),
        ("  OK→delivery p99 ms ↓", lambda t: _get(t, "fanout", "ok_to_delivery", "p99_ms")),
        ("  delivered %", lambda t: _get(t, "fanout", "delivered_pct")),
        (
            f"idle {args['idle']:,} connections: KB per connection ↓",
            lambda t: _get(t, "idle", "kb_per_connection"),
        ),
        ("  relay RSS before → after MB", _idle_rss),
    ] + (_pagination_rows(results) if _any(results, "pagination") else [])


def _any(results: dict[str, Any], key: str) -> bool:
    return any(t.get(key) for t in results["targets"].values())


def _pagination_rows(results: dict[str, Any]) -> list[Row]:
    args = results["meta"]["args"]
    n, limit = args.get("pagination_events"), args.get("pagination_limit")

    def page(which: str, q: str) -> Callable[[dict[str, Any]], Any]:
        return lambda t: _get(t, "pagination", which, q)

    return [
        (
            f"deep pagination {_fmt(n)} notes, limit {_fmt(limit)}: first tenth of pages p50 ms ↓",
            page("first_pages", "p50_ms"),
        ),
        ("  first tenth p99 ms ↓", page("first_pages", "p99_ms")),
        ("  last tenth p50 ms ↓", page("last_pages", "p50_ms")),
        ("  last tenth p99 ms ↓", page("last_pages", "p99_ms")),
        ("  last ÷ first, p50 (flat = 1)", lambda t: _get(t, "pagination", "last_over_first_p50")),
        ("  last ÷ first, p99", lambda t: _get(t, "pagination", "last_over_first_p99")),
        ("  pages/s ↑", lambda t: _get(t, "pagination", "pages_per_s")),
        ("  walk time s ↓", lambda t: _get(t, "pagination", "walk_seconds")),
        ("  notes walked / loaded", _walked),
        (
            "  notes loaded over WebSocket: events/s ↑",
            lambda t: _get(t, "pagination", "load", "events_per_s"),
        ),
    ]


def _walked(t: dict[str, Any]) -> Any:
    w = t.get("pagination")
    if not w:
        return None
    text = f"{w['events']:,} / {_get(w, 'load', 'loaded') or w['expected']:,}"
    if w.get("exact"):
        return text + " exact"
    problems = [
        f"{w[k]:,} {k.replace('_', ' ')}"
        for k in ("missing", "extra", "repeated", "out_of_order", "errors")
        if w.get(k)
    ]
    return text + (f" ({', '.join(problems)})" if problems else "")


def _idle_rss(t: dict[str, Any]) -> Any:
    before, after = _get(t, "idle", "rss_before_mb"), _get(t, "idle", "rss_after_mb")
    if before is None:
        return None
    return f"{before:,.0f} → {after:,.0f}"


def render_markdown(results: dict[str, Any]) -> str:
    meta, gen = results["meta"], results["generation"]
    machine = meta["machine"]
    targets: dict[str, dict[str, Any]] = results["targets"]
    names = list(targets)
    other = next((x for x in names if not x.startswith("fitrelay")), None)
    base = "fitrelay" if "fitrelay" in targets else next(iter(names), None)
    compare = base is not None and other is not None

    out = [
        f"### {gen['events']:,} events — {meta['date']}",
        "",
        "Command: "
        + (
            f"`{meta['make_command']}` (runs `{meta['command']}`)"
            if meta.get("make_command")
            else f"`{meta['command']}`"
        ),
        "",
        f"Machine: {machine['nproc']} x {machine['cpu']}, {machine['ram_gib']} GiB RAM,"
        f" PostgreSQL {machine['postgresql']} (local, {_pg_settings(machine)}),"
        f" Linux {machine['kernel']}, Python {machine['python']}; load average at start"
        f" {', '.join(f'{x:.2f}' for x in machine['loadavg_at_start'])}."
        " A shared virtual machine: the benchmark client, the relay and PostgreSQL share its"
        " cores, and other work may run beside them.",
        "",
        f"fitrelay commit {machine['fitrelay_commit']}."
        + (f" {other} {targets[other].get('version', '')}." if other else ""),
        "",
        f"Events: {gen['events']:,} main + {gen['stream_events']:,} stream, {gen['authors']:,}"
        f" authors, seed {gen['seed']}, {gen['bytes'] / 1e6:,.0f} MB; generated and signed in"
        f" {gen['generation_seconds']:.1f} s with {gen['signing_processes']} processes"
        f"{' (this run reused the cache)' if gen['cached'] else ''}.",
    ]
    imports = [(name, t["import"]) for name, t in targets.items() if t.get("import")]
    for name, imp in imports:
        out.append(
            f"`{name} import` of the main file: {_fmt(imp.get('events_per_s'))} events/s"
            f" ({imp.get('seconds')} s; {imp.get('counts')})."
        )
    for name, t in targets.items():
        if t.get("error"):
            out.append(f"**{name} failed:** {t['error'].splitlines()[0][:300]}")
    out.append("")
    header = "| measure | " + " | ".join(names)
    header += f" | {base} ÷ {other} |" if compare else " |"
    out += [header, "|---" * (len(names) + 1 + compare) + "|"]
    for label, get in _rows(results):
        values = [get(t) for t in targets.values()]
        cells = [_fmt(v) for v in values]
        line = f"| {label} | " + " | ".join(cells)
        if base is not None and other is not None:
            ratio = "" if label in _NO_RATIO else _ratio(get(targets[base]), get(targets[other]))
            line += f" | {ratio} |"
        else:
            line += " |"
        out.append(line)
    out += ["", _query_table(results, names, base, other), ""]
    for name, t in targets.items():
        causes: dict[str, int] = {}
        for shape in SHAPES:
            for key, count in (_get(t, "query", shape, "mismatch_causes") or {}).items():
                causes[key] = causes.get(key, 0) + count
        if causes:
            listed = ", ".join(f"{n} {k}" for k, n in sorted(causes.items(), key=lambda kv: -kv[1]))
            out += [
                f"Events in {name}'s wrong answers, by what the model says of them: {listed}.",
                "",
            ]
    for name, t in targets.items():
        held = _get(t, "query", "event_cache")
        asked = held.get("mirror_answers", 0) + held.get("mirror_declined", 0) if held else 0
        if held and asked:
            out += [
                f"Mirror, {name}, over the REQ shapes: {held['mirror_answers'] / asked:.1%} of"
                f" the {asked:,.0f} REQs were answered from memory without PostgreSQL.",
                "",
            ]
        if held and held.get("hits", 0) + held.get("misses", 0):
            looked_up = held["hits"] + held["misses"]
            text = (
                f"Event cache, {name}, over the REQ shapes: {held['hits'] / looked_up:.1%} of"
                f" the {looked_up:,.0f} answer events were held in memory"
            )
            if held["misses"]:
                text += f"; the other {held['misses']:,.0f} were read from PostgreSQL by id"
            out += [text + ".", ""]
    out += _pagination_notes(targets)
    phase_times = []
    for name, t in targets.items():
        times = ", ".join(f"{k} {v:.0f} s" for k, v in (t.get("phase_seconds") or {}).items())
        phase_times.append(f"{name}: {times}")
    out.append(
        "Phase wall times — " + "; ".join(phase_times) + f". Whole run {meta['seconds']:.0f} s."
    )
    out += _profile_section(results)
    return "\n".join(out) + "\n"


def _pagination_notes(targets: dict[str, dict[str, Any]]) -> list[str]:
    notes = []
    for name, t in targets.items():
        w = t.get("pagination")
        if not w:
            continue
        load = w.get("load") or {}
        text = (
            f"Deep pagination, {name}: {load.get('loaded', 0):,} notes of one author loaded"
            f" with {load.get('method', '?')} at {_fmt(load.get('events_per_s'))} events/s"
        )
        if load.get("truncated"):
            text += (
                f" — not all {load['requested']:,}: at the {_fmt(load['probe_events_per_s'])}"
                f" events/s of the first notes they would have taken longer than"
                f" {load['budget_s']:,.0f} s"
            )
        tenth = w["pages_per_tenth"]
        text += (
            f"; walked back in {w['pages']:,} pages of up to {w['limit']:,} (the first and"
            f" last tenths: {tenth:,} page{'s' if tenth != 1 else ''} each)"
        )
        slowest = w.get("slowest_page")
        if slowest and w.get("page_ms"):
            text += f"; the slowest was page {slowest:,}, {_fmt(w['page_ms'][slowest - 1])} ms"
        if w.get("missing_at_until"):
            text += (
                f"; {w['missing_at_until']:,} of the {w['missing']:,} missing notes are the"
                " ones whose created_at was a page's `until`, the notes a relay skips when it"
                " takes `until` as exclusive (NIP-01 makes it inclusive)"
            )
        if w.get("error"):
            text += f"; the walk stopped: {w['error'][:200]}"
        notes += [text + ".", ""]
    return notes


_PROFILE_ROWS = 10


def _profile_section(results: dict[str, Any]) -> list[str]:
    info = results["meta"].get("profile")
    targets: dict[str, dict[str, Any]] = results["targets"]
    profiled = [(name, t["profiles"]) for name, t in targets.items() if t.get("profiles")]
    if info and info.get("missing") and not profiled:
        return ["", f"Profiles were asked for (`--profile`), but {info['missing']}."]
    if not profiled:
        return []
    version = (info or {}).get("version") or "py-spy"
    names = dict.fromkeys(
        e.split(" (", 1)[0] for _, ps in profiled for p in ps.values() for e in p.get("entry", [])
    )
    entry = ", ".join(f"`{n}`" for n in names) or "none"
    rate = (info or {}).get("rate_hz", 200)
    out = [
        "",
        "#### Where the relay's time goes",
        "",
        f"{version} sampled the relay's process tree {rate} times a second during each phase"
        " (`--profile`). Idle moments (waiting on the network or PostgreSQL) are not"
        " sampled, so the shares are of the time the relay was running. *Self*: the"
        " function was the innermost Python frame (time in C code it called counts as its"
        " own; `Runner.run`'s is the event loop's C code: polling, socket reads and writes,"
        " callbacks); *inclusive*: it was anywhere on the stack, except the entry frames on"
        f" nearly every stack ({entry}), left out. file:line is the line most of those"
        " samples were on. The sampler shares the cores, so this run's other figures are"
        f" lower than an unprofiled run's. Top {_PROFILE_ROWS} here, 15 in the JSON; the"
        f" collapsed stacks are in `{results['meta'].get('logs', 'the run directory')}`.",
    ]
    for name, profiles in profiled:
        for phase, p in profiles.items():
            out += ["", _profile_heading(name, phase, p), ""]
            if not p.get("samples"):
                continue
            out += ["| self % | function | inclusive % | function |", "|---:|---|---:|---|"]
            self_rows, incl_rows = p.get("self") or [], p.get("inclusive") or []
            for i in range(min(_PROFILE_ROWS, max(len(self_rows), len(incl_rows)))):
                cells = []
                for rows in (self_rows, incl_rows):
                    if i < len(rows):
                        r = rows[i]
                        cells += [f"{r['pct']:.1f}", f"`{r['function']}` {r['where']}"]
                    else:
                        cells += ["", ""]
                out.append("| " + " | ".join(cells) + " |")
    return out


def _profile_heading(name: str, phase: str, p: dict[str, Any]) -> str:
    text = f"**{name}, {phase}**: {p.get('samples', 0):,} samples in {p.get('seconds', 0):.0f} s"
    if p.get("processes", 0) > 1:
        text += f" across {p['processes']} processes"
    if p.get("entry"):
        text += f"; the entry frames are on {p.get('entry_pct', 0):.1f} % of them"
    if p.get("error"):
        text += f" — {p['error'][:200]}"
    return text


def _pg_settings(machine: dict[str, Any]) -> str:
    s = machine.get("postgresql_settings") or {}
    return ", ".join(f"{k}={v}" for k, v in s.items() if k != "max_connections")


def _query_table(
    results: dict[str, Any], names: list[str], base: str | None, other: str | None
) -> str:
    args = results["meta"]["args"]
    targets = results["targets"]
    compare = base is not None and other is not None
    head = "| REQ shape (C=" + str(args["query_concurrency"]) + ") | "
    head += " | ".join(f"{n} q/s ↑" for n in names)
    if compare:
        head += f" | q/s {base} ÷ {other}"
    head += " | " + " | ".join(f"{n} EOSE p50 / p99 ms ↓" for n in names)
    head += " | " + " | ".join(f"{n} answers exact" for n in names) + " |"
    columns = 1 + len(names) * 3 + compare
    lines = [head, "|---" * columns + "|"]
    for shape, label in SHAPES.items():
        rows = [_get(targets[n], "query", shape) or {} for n in names]
        qps = [r.get("queries_per_s") for r in rows]
        line = f"| {label} | " + " | ".join(_fmt(q) for q in qps)
        if base is not None and other is not None:
            line += f" | {_ratio(qps[names.index(base)], qps[names.index(other)])}"
        lat = []
        for r in rows:
            e = r.get("eose_latency") or {}
            lat.append(f"{_fmt(e.get('p50_ms'))} / {_fmt(e.get('p99_ms'))}")
        line += " | " + " | ".join(lat)
        checks = []
        for r in rows:
            if not r:
                checks.append("-")
                continue
            text = f"{r['exact']}/{r['queries']}"
            extra = [f"{r[k]} {k.replace('_only', '')}" for k in ("order_only", "wrong", "errors")]
            extra = [x for x in extra if not x.startswith("0 ")]
            checks.append(text + (f" ({', '.join(extra)})" if extra else ""))
        line += " | " + " | ".join(checks) + " |"
        lines.append(line)
    return "\n".join(lines)


_BEGIN = "<!-- bench:begin {key} -->"
_END = "<!-- bench:end {key} -->"


def update_doc(path: Path, key: str, markdown: str) -> None:
    """Put ``markdown`` between the markers for ``key`` (replacing what was there), or add
    a new marked section after the last one (at the end of the file when there is none)."""
    begin, end = _BEGIN.format(key=key), _END.format(key=key)
    block = f"{begin}\n{markdown.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    last = list(re.finditer(r"<!-- bench:end [^>]* -->", text))
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    elif last:
        at = last[-1].end()
        text = text[:at] + "\n\n" + block + text[at:]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
