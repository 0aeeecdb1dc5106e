"""BIP-340 signature verification through libsecp256k1."""

from __future__ import annotations

import secp256k1

__all__ = ["verify_signature"]

_EVEN = b"\x02"


def verify_signature(event_id: str, pubkey: str, sig: str) -> bool:
    """True when ``sig`` is a valid BIP-340 signature by x-only ``pubkey`` over ``event_id``.

    All three are lowercase hex (validated by the caller). A pubkey that is not a point on
    the curve is simply not valid.
    """
    try:
        key = secp256k1.PublicKey(_EVEN + bytes.fromhex(pubkey), raw=True)
    except Exception:  # libsecp256k1 reports a bad point as a plain Exception
        return False
    return bool(key.schnorr_verify(bytes.fromhex(event_id), bytes.fromhex(sig), None, raw=True))
