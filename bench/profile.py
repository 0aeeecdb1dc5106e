"""Profiles of the relay: py-spy recordings around a phase, and what they say.

With ``--profile``, each profiled phase of a fitrelay run is recorded by

    py-spy record -p PID -r 200 -f raw -o FILE --nonblocking --subprocesses

started before the phase body and stopped with SIGINT after it (py-spy then writes FILE).
The raw output is the "collapsed stack" format: one line per distinct stack, frames from
the outermost to the innermost separated by ``;``, then a space and the number of samples.
A Python frame reads ``function (file:line)``, with the line the frame was executing; with
``--subprocesses`` each stack starts with one ``process PID:"command line"`` frame per
level of the process tree. py-spy leaves out idle threads (waiting in ``epoll``, a lock or
a socket read), so the samples are the moments some thread of the relay was running.

:func:`summarise` turns that text into the figures kept in the results JSON. A function is
its name and file (whatever line of it was running): its *self* share counts the samples in
which it was the innermost frame, its *inclusive* share the samples in which it was anywhere
on the stack, once per sample however deep it recursed. Its ``where`` is ``file:line`` with
the line most of those samples were on. The inclusive ranking leaves out the *entry* frames,
those on (nearly) every stack that has any of them (``<module>``, the command's ``main``,
``Runner.run``...): they would fill the top of it with the same share and say nothing.
They are listed apart, with that share.

With ``--nonblocking`` py-spy reads the stacks while the relay runs, so a few samples catch
a stack half-changed and come out partial (coroutine frames without the loop under them);
they count like the others.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "PROFILED_PHASES",
    "SAMPLE_RATE",
    "Recording",
    "find_py_spy",
    "py_spy_version",
    "summarise",
]

SAMPLE_RATE = 200
PROFILED_PHASES = ("ingest", "stopwait", "query", "pagination", "fanout")
ENTRY_SHARE = 0.995
"""Functions on at least this share of the stacks of the most frequent one are entry frames."""
_FRAME = re.compile(r"(?P<name>.*) \((?P<file>.*):(?P<line>\d+)\)\Z")


def _pct(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2) if whole else 0.0


def summarise(text: str, top: int = 15) -> dict[str, Any]:
    """Samples, and the ``top`` functions by self and by inclusive share, of a collapsed
    stack file (py-spy's ``-f raw``). Lines that do not end in a sample count are counted
    in ``unparsed_lines`` and otherwise ignored."""
    samples = 0
    unparsed = 0
    self_lines: dict[tuple[str, str], Counter[int]] = {}
    incl_lines: dict[tuple[str, str], Counter[int]] = {}
    processes: Counter[str] = Counter()
    for raw in text.splitlines():
        raw = raw.strip()
        if not raw:
            continue
        stack, _, count_text = raw.rpartition(" ")
        if not stack or not count_text.isdigit():
            unparsed += 1
            continue
        count = int(count_text)
        samples += count
        innermost: tuple[str, str, int] | None = None
        seen: dict[tuple[str, str], int] = {}
        process = ""
        for frame in stack.split(";"):
            match = _FRAME.match(frame)
            if match is None:
                if frame.startswith("process "):
                    process = frame.split(":", 1)[0].removeprefix("process ")
                continue
            key = (match["name"], match["file"])
            line = int(match["line"])
            # Recursion: the innermost occurrence stands for the function in this sample.
            seen[key] = line
            innermost = (key[0], key[1], line)
        if process:
            processes[process] += count
        if innermost is not None:
            name, file, line = innermost
            self_lines.setdefault((name, file), Counter())[line] += count
        for key, line in seen.items():
            incl_lines.setdefault(key, Counter())[line] += count

    def ranked(lines: dict[tuple[str, str], Counter[int]]) -> list[dict[str, Any]]:
        totals = sorted(
            ((sum(c.values()), name, file) for (name, file), c in lines.items()),
            key=lambda t: (-t[0], t[1], t[2]),
        )
        rows = []
        for n, name, file in totals:
            # The line most samples were on; the lowest such line on a tie.
            line = min(lines[(name, file)].items(), key=lambda kv: (-kv[1], kv[0]))[0]
            rows.append(
                {"function": name, "where": f"{file}:{line}", "samples": n, "pct": _pct(n, samples)}
            )
        return rows

    inclusive = ranked(incl_lines)
    most = inclusive[0]["samples"] if inclusive else 0
    entry = [r for r in inclusive if r["samples"] >= ENTRY_SHARE * most]
    return {
        "samples": samples,
        "processes": len(processes),
        "unparsed_lines": unparsed,
        "self": ranked(self_lines)[:top],
        "inclusive": inclusive[len(entry) :][:top],
        "entry": [f"{r['function']} ({r['where']})" for r in entry],
        "entry_pct": entry[-1]["pct"] if entry else 0.0,
    }


# -- recording ------------------------------------------------------------------------------


def find_py_spy() -> str | None:
    """py-spy beside this interpreter (a virtual environment's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("py-spy")


def py_spy_version(py_spy: str) -> str:
    try:
        done = subprocess.run([py_spy, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    return done.stdout.strip() or "unknown"


@dataclass
class Recording:
    """One py-spy process recording ``pid`` (and its children) into ``path``."""

    path: Path
    log_path: Path
    proc: subprocess.Popen[bytes]
    started: float
    error: str | None = None

    @classmethod
    def start(
        cls, py_spy: str, pid: int, path: Path, *, rate: int = SAMPLE_RATE, ready: float = 15.0
    ) -> Recording:
        """Start recording and return once py-spy says it is sampling (or gave up)."""
        log_path = path.with_suffix(".pyspy.log")
        cmd = [py_spy, "record", "-p", str(pid), "-r", str(rate), "-f", "raw"]
        cmd += ["-o", str(path), "--nonblocking", "--subprocesses"]
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        rec = cls(path, log_path, proc, time.perf_counter())
        deadline = time.monotonic() + ready
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                rec.error = f"py-spy exited with status {proc.returncode}: {rec._log_tail()}"
                break
            if b"Sampling process" in log_path.read_bytes():
                break
            time.sleep(0.05)
        else:
            rec.error = f"py-spy did not start sampling within {ready:.0f} s"
        rec.started = time.perf_counter()
        return rec

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-3:])
        except OSError:
            return ""

    def stop(self, timeout: float = 120.0) -> dict[str, Any]:
        """SIGINT, wait for py-spy to write its file, and summarise it."""
        seconds = time.perf_counter() - self.started
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                self.error = self.error or f"py-spy did not exit within {timeout:.0f} s of SIGINT"
        out: dict[str, Any] = {
            "file": str(self.path),
            "seconds": round(seconds, 1),
            "rate_hz": SAMPLE_RATE,
        }
        text = ""
        try:
            text = self.path.read_text(errors="replace")
        except OSError:
            # An empty file is a relay that was idle throughout; no file is a failure.
            self.error = self.error or (
                f"py-spy wrote no file (status {self.proc.returncode}): {self._log_tail()}"
            )
        out.update(summarise(text))
        if self.error:
            out["error"] = self.error
        return out
