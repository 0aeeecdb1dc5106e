"""Named SQL statements loaded from ``sql/queries/*.sql``."""

from __future__ import annotations

import re
from importlib import resources

__all__ = ["load_queries"]

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def load_queries(filename: str) -> dict[str, str]:
    """Split one queries file into ``{name: statement}``; comment lines are dropped."""
    text = resources.files("sql.queries").joinpath(filename).read_text(encoding="utf-8")
    chunks = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(chunks[1::2], chunks[2::2], strict=True):
        lines = [line for line in body.splitlines() if not line.lstrip().startswith("--")]
        queries[name] = "\n".join(lines).strip().rstrip(";")
    return queries
