"""Test keys and signed events (BIP-340 through libsecp256k1)."""

from __future__ import annotations

import hashlib
import itertools
import time
from typing import Any

import msgspec
import secp256k1

from relay.nostr.event import canonical_bytes

_counter = itertools.count()


class Keys:
    """A key pair; deterministic when given a seed."""

    def __init__(self, seed: int | None = None) -> None:
        if seed is None:
            self._key = secp256k1.PrivateKey()
        else:
            secret = hashlib.sha256(f"fitrelay-test-key-{seed}".encode()).digest()
            self._key = secp256k1.PrivateKey(secret, raw=True)
        self.pubkey: str = self._key.pubkey.serialize()[1:].hex()

    def sign(
        self,
        kind: int = 1,
        content: str = "",
        tags: list[list[str]] | None = None,
        created_at: int | None = None,
    ) -> dict[str, Any]:
        """A signed event as a JSON-ready dict."""
        tags = [] if tags is None else tags
        if created_at is None:
            created_at = int(time.time())
        serial = canonical_bytes(self.pubkey, created_at, kind, tags, content)
        event_id = hashlib.sha256(serial).hexdigest()
        sig = self._key.schnorr_sign(bytes.fromhex(event_id), None, raw=True).hex()
        return {
            "id": event_id,
            "pubkey": self.pubkey,
            "created_at": created_at,
            "kind": kind,
            "tags": tags,
            "content": content,
            "sig": sig,
        }


def unique_content(prefix: str = "note") -> str:
    return f"{prefix} {next(_counter)}"


def dumps(obj: object) -> str:
    return msgspec.json.encode(obj).decode()
