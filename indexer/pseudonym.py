"""Pseudonyms for exported rows: keyed hashes of pubkeys, event ids and d-tags, and coarse dates.

A :class:`Pseudonymizer` replaces, with HMAC-SHA256 under an operator's secret:

- every 64-digit hex string (a pubkey or an event id), wherever it appears in a text value,
  by the 64 hex digits of its HMAC, so a pubkey column, an id column and the pubkey inside
  an address all get the same pseudonym and joins between exported tables still match;
- the value of a d-tag column (``d`` or ``*_d``) by 32 hex digits of its HMAC, under a
  different domain than hex strings;
- an address ``kind:pubkey:d`` (the whole value of a text field, or an element of an
  array) by ``kind:<pseudonym of pubkey>:<pseudonym of d>``, so an address column matches
  the ``pubkey`` and ``d`` columns of the table it refers to (a pubkey slot that holds no
  pubkey, as POWR's ``33401:local:<d>``, is kept, and its d still hidden).

The same secret gives the same pseudonyms in every export; there is no default secret.
:func:`coarsen` truncates a time or date to the start of its day, ISO week or month (UTC).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "COARSENESS",
    "MIN_SECRET_BYTES",
    "RAW_TIME_COLUMNS",
    "SECRET_ENV",
    "Pseudonymizer",
    "coarsen",
    "coarsen_raw_time",
    "is_d_column",
    "load_secret",
]

SECRET_ENV = "FITRELAY_PSEUDONYM_SECRET"
"""Environment variable holding the secret when no secret file is given."""
MIN_SECRET_BYTES = 16
COARSENESS = ("day", "week", "month")

_HEX = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])")
_ADDRESS = re.compile(r"^([13]\d{4}):([0-9a-fA-F]{64}|[^:]*):(.*)$", re.DOTALL)
"""An address of a replaceable (1xxxx) or addressable (3xxxx) kind; the pubkey slot may hold
something else than a pubkey (POWR writes ``local`` or nothing), the d-tag anything."""
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_DOMAIN_HEX = b"fitrelay-hex\x00"
_DOMAIN_D = b"fitrelay-d\x00"


def load_secret(
    path: Path | None, environ: Mapping[str, str] | None = None, configured: Path | None = None
) -> bytes:
    """The pseudonym secret, from the first of: the contents of ``path`` (``--secret-file``),
    the environment variable :data:`SECRET_ENV`, the contents of ``configured``
    (``export.pseudonym_secret_file``). A file's trailing line break is dropped.

    Raises:
        ValueError: no secret is configured, or it is shorter than :data:`MIN_SECRET_BYTES`.
        OSError: the file cannot be read.
    """
    env = os.environ if environ is None else environ
    if path is None and not env.get(SECRET_ENV):
        path = configured
    if path is not None:
        secret = path.read_bytes().rstrip(b"\r\n")
        where = str(path)
    elif env.get(SECRET_ENV):
        secret = env[SECRET_ENV].encode()
        where = SECRET_ENV
    else:
        raise ValueError(
            f"--pseudonymize needs a secret: --secret-file FILE, the environment variable"
            f" {SECRET_ENV} or export.pseudonym_secret_file (there is no default)"
        )
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(
            f"the pseudonym secret in {where} is shorter than {MIN_SECRET_BYTES} bytes"
        )
    return secret


def is_d_column(name: str) -> bool:
    """Whether a column holds a d-tag: ``d``, or a name ending in ``_d``."""
    return name == "d" or name.endswith("_d")


class Pseudonymizer:
    """Keyed pseudonyms for text values; the same secret always gives the same ones."""

    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("an empty pseudonym secret")
        self._secret = secret
        self._cache: dict[str, str] = {}

    def hex(self, value: str) -> str:
        """The pseudonym of a pubkey or event id (64 hex digits, any case)."""
        key = value.lower()
        found = self._cache.get(key)
        if found is None:
            mac = hmac.new(self._secret, _DOMAIN_HEX + key.encode(), hashlib.sha256)
            found = self._cache[key] = mac.hexdigest()
        return found

    def d(self, value: str) -> str:
        """The pseudonym of a d-tag (32 hex digits)."""
        mac = hmac.new(self._secret, _DOMAIN_D + value.encode(), hashlib.sha256)
        return mac.hexdigest()[:32]

    def text(self, value: str) -> str:
        """``value`` with an address's pubkey and d, or every hex id in it, replaced."""
        address = _ADDRESS.match(value)
        if address is not None:
            kind, pubkey, d = address.groups()
            author = self.hex(pubkey) if _HEX64.match(pubkey) else pubkey
            return f"{kind}:{author}:{self.d(d)}"
        if len(value) < 64:
            return value
        return _HEX.sub(lambda m: self.hex(m.group(0)), value)

    def column(self, name: str) -> Callable[[Any], Any]:
        """How to pseudonymize the values of column ``name`` (text, text[] or anything
        else, which passes unchanged)."""
        one = self.d if is_d_column(name) else self.text

        def convert(value: Any) -> Any:
            if isinstance(value, str):
                return one(value)
            if isinstance(value, list):
                return [v if not isinstance(v, str) else one(v) for v in value]
            return value

        return convert


def coarsen(value: Any, unit: str) -> Any:
    """``value`` (a datetime or date; anything else passes unchanged) truncated to the start
    of its ``unit`` (``day``, ``week`` (Monday) or ``month``), in UTC for aware times."""
    if unit not in COARSENESS:
        raise ValueError(f"unknown coarseness {unit!r}; valid: {', '.join(COARSENESS)}")
    if isinstance(value, dt.datetime):
        tz = value.tzinfo
        if tz is not None:
            value = value.astimezone(dt.UTC)
        day = _truncate(value.date(), unit)
        return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC if tz else None)
    if isinstance(value, dt.date):
        return _truncate(value, unit)
    return value


RAW_TIME_COLUMNS = frozenset({"start_raw", "end_raw"})
"""Text columns holding a time as published (unix seconds or milliseconds)."""


def coarsen_raw_time(value: Any, unit: str) -> Any:
    """A raw unix time (seconds, or 13-digit milliseconds) as the unix seconds of the start of
    its ``unit``; a value that is no such number becomes None, since it may still say when."""
    if value is None or value == "":
        return value
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    seconds = number // 1000 if abs(number) >= 10**12 else number
    try:
        at = dt.datetime.fromtimestamp(seconds, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return str(int(coarsen(at, unit).timestamp()))


def _truncate(day: dt.date, unit: str) -> dt.date:
    if unit == "week":
        return day - dt.timedelta(days=day.weekday())
    if unit == "month":
        return day.replace(day=1)
    return day
