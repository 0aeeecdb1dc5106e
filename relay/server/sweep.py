"""The expiration sweep stage: deletes expired events (NIP-40) now and then. They are never
served meanwhile; the sweep only reclaims their space."""

from __future__ import annotations

import asyncio
import logging
import time

from relay.storage.failures import DATABASE_ERRORS
from relay.storage.postgres import Store

__all__ = ["ExpirationSweep"]

log = logging.getLogger(__name__)


class ExpirationSweep:
    """A stage: every ``interval`` seconds, delete the events whose expiration has passed."""

    name = "expiration sweep"

    def __init__(self, store: Store, interval: float) -> None:
        self.store = store
        self.interval = interval

    async def start(self) -> None:
        """Nothing to set up."""

    async def stop(self) -> None:
        """Nothing to drain: a sweep is one statement, rolled back if cancelled."""

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                purged = await self.store.purge_expired(int(time.time()))
            except DATABASE_ERRORS:
                log.exception("expiration sweep failed")
                continue
            if purged:
                log.info("deleted %d expired events", purged)
