"""The one exception of the embedded server."""

from __future__ import annotations

__all__ = ["EmbeddedPostgresError"]


class EmbeddedPostgresError(RuntimeError):
    """The embedded PostgreSQL server could not be set up, started or stopped."""
