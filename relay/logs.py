"""Logging set-up: plain text or one JSON object per line.

Connection lines carry ``conn <id>`` in their text; the JSON form also has a ``conn`` field
when a record was logged with ``extra={"conn": id}``. DSNs are never logged with their
password (:func:`redact_dsn`).
"""

from __future__ import annotations

import json
import logging
import re
import time

__all__ = ["JsonFormatter", "redact_dsn", "setup_logging"]

_CONN = re.compile(r"^conn (\d+): ")
_PASSWORD = re.compile(r"(://[^:/@]+:)[^@]*@")


def redact_dsn(dsn: str) -> str:
    """The DSN with any password replaced by ``***``."""
    return _PASSWORD.sub(r"\1***@", dsn)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, conn (when known), error."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        conn = getattr(record, "conn", None)
        if conn is None:
            match = _CONN.match(message)
            conn = int(match.group(1)) if match else None
        if conn is not None:
            entry["conn"] = conn
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str, fmt: str) -> None:
    """Configure the root logger once for the process."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # websockets logs every handshake failure at INFO with a traceback; keep it quieter.
    logging.getLogger("websockets").setLevel(max(root.level, logging.WARNING))
