"""BIP-340 signing of events, for what the relay itself publishes (``fitrelay demo``) and for
the keys the tests sign with."""

from __future__ import annotations

import hashlib
from typing import Any

import secp256k1

from relay.nostr.event import canonical_bytes

__all__ = ["SigningKey"]


class SigningKey:
    """A secp256k1 key pair; random, or derived from a label (the same label, the same key)."""

    def __init__(self, label: str | None = None) -> None:
        if label is None:
            self._key = secp256k1.PrivateKey()
        else:
            secret = hashlib.sha256(label.encode()).digest()
            self._key = secp256k1.PrivateKey(secret, raw=True)
        self.pubkey: str = self._key.pubkey.serialize()[1:].hex()
        """The x-only public key, lowercase hex."""

    def sign(
        self, kind: int, content: str, tags: list[list[str]], created_at: int
    ) -> dict[str, Any]:
        """The signed event as a JSON-ready dict (id over the NIP-01 serialisation)."""
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
