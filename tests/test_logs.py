"""Log lines: the JSON form and secrets kept out."""

from __future__ import annotations

import io
import json
import logging

from relay.logs import JsonFormatter, redact_dsn


def _log_json(message: str, *args: object, **extra: object) -> dict[str, object]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("fitrelay.test.json")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        raise ValueError("boom")
    except ValueError:
        logger.info(message, *args, extra=extra, exc_info=bool(extra.get("with_error")))
    line = stream.getvalue()
    assert line.count("\n") == 1  # one object per line, even with a traceback inside
    parsed: dict[str, object] = json.loads(line)
    return parsed


def test_json_lines_carry_the_connection_id() -> None:
    entry = _log_json("conn %d: open from %s", 42, "127.0.0.1")
    assert entry["message"] == "conn 42: open from 127.0.0.1"
    assert entry["conn"] == 42
    assert entry["level"] == "INFO"
    assert str(entry["time"]).endswith("Z")
    assert "error" not in entry


def test_json_lines_keep_tracebacks_inside_the_object() -> None:
    entry = _log_json("writer failed", with_error=True)
    assert "ValueError: boom" in str(entry["error"])
    assert "conn" not in entry


def test_dsn_passwords_never_reach_the_log() -> None:
    assert (
        redact_dsn("postgresql://relay:s3cret@db:5432/fit") == "postgresql://relay:***@db:5432/fit"
    )
    assert redact_dsn("postgresql://relay@db/fit") == "postgresql://relay@db/fit"
    assert redact_dsn("postgresql:///fit?host=/run/pg") == "postgresql:///fit?host=/run/pg"
