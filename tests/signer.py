"""Test keys and signed events (BIP-340 through libsecp256k1)."""

from __future__ import annotations

import itertools
import time
from typing import Any

import msgspec

from relay.nostr.signing import SigningKey

_counter = itertools.count()


class Keys(SigningKey):
    """A key pair; deterministic when given a seed."""

    def __init__(self, seed: int | None = None) -> None:
        super().__init__(None if seed is None else f"fitrelay-test-key-{seed}")

    def sign(
        self,
        kind: int = 1,
        content: str = "",
        tags: list[list[str]] | None = None,
        created_at: int | None = None,
    ) -> dict[str, Any]:
        """A signed event as a JSON-ready dict (now, and no tags, unless given)."""
        when = int(time.time()) if created_at is None else created_at
        return super().sign(kind, content, [] if tags is None else tags, when)


def unique_content(prefix: str = "note") -> str:
    return f"{prefix} {next(_counter)}"


def dumps(obj: object) -> str:
    return msgspec.json.encode(obj).decode()
