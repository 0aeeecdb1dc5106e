"""fitrelay: a Nostr relay and indexer specialised for fitness data."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
