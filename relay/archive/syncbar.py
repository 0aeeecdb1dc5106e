"""``fitrelay sync``'s progress bars on stderr: the negentropy rounds, then events fetched
of those needed (or, by REQ pages, fetched so far and the ``created_at`` reached), then
events sent of those the upstream lacks. Only on a terminal: disabled, it draws nothing."""

from __future__ import annotations

import time
from typing import Any

from relay.archive.importer import progress_bar
from relay.archive.upstream import SyncProgress, SyncReport

__all__ = ["SyncBar"]


class SyncBar(SyncProgress):
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def _switch(self, **kwargs: Any) -> Any:
        if self.bar is not None:
            self.bar.close()
        self.bar = progress_bar(self.enabled, **kwargs)
        return self.bar

    def reconciling(self, rounds: int) -> None:
        if rounds == 1:
            self._switch(desc="reconciling", unit=" rounds")
        self.bar.update(1)

    def fetching(self, total: int | None) -> None:
        self._switch(desc="fetched", unit=" events", total=total)

    def stored(self, batch: int, report: SyncReport, reached: int | None = None) -> None:
        self.bar.update(batch)
        if reached is not None:
            day = time.strftime("%Y-%m-%d %H:%M", time.gmtime(reached))
            self.bar.set_postfix_str(f"reached {day}", refresh=False)

    def sending(self, total: int) -> None:
        self._switch(desc="sent", unit=" events", total=total)

    def published(self, batch: int, report: SyncReport) -> None:
        self.bar.update(batch)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
