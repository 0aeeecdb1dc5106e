"""Errors a client can see.

The tree::

    RelayError                 anything fitrelay raises on purpose
    └── NostrError             carries a NIP-01 machine-readable prefix and a human reason;
                               it becomes an OK false, a CLOSED or a NOTICE in one place
                               (:mod:`relay.nostr.session`)

The prefixes are the ones NIP-01 names: ``invalid``, ``blocked``, ``rate-limited``, ``pow``,
``restricted``, ``duplicate``, ``error``, plus ``unsupported`` for CLOSED, NIP-42's
``auth-required`` and ``closed`` for NIP-77's NEG-ERR.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["PREFIXES", "NostrError", "Prefix", "RelayError"]

Prefix = Literal[
    "invalid",
    "blocked",
    "rate-limited",
    "pow",
    "restricted",
    "duplicate",
    "error",
    "unsupported",
    "auth-required",
    "closed",
]
PREFIXES: tuple[Prefix, ...] = get_args(Prefix)
"""Every machine-readable prefix, in one place (metric labels are drawn from it)."""


class RelayError(Exception):
    """Base of every error fitrelay raises deliberately."""


class NostrError(RelayError):
    """An error shown to the client as ``"<prefix>: <reason>"``."""

    def __init__(self, prefix: Prefix, reason: str) -> None:
        super().__init__(f"{prefix}: {reason}")
        self.prefix: Prefix = prefix
        self.reason = reason

    @property
    def message(self) -> str:
        return f"{self.prefix}: {self.reason}"
