"""The real signed events shipped in ../shared/fixtures/real-events/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real-events"


def valid_events() -> list[dict[str, Any]]:
    with (FIXTURES / "valid.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def invalid_cases() -> list[dict[str, Any]]:
    """``{"event": ..., "why": ..., "detail": ...}`` rows."""
    with (FIXTURES / "invalid.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def valid_lines() -> list[str]:
    """valid.jsonl lines exactly as written (the raw JSON a client would send)."""
    with (FIXTURES / "valid.jsonl").open(encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]
