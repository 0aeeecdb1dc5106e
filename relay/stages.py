"""Stages: the parts a process is built from, started in order and stopped in reverse.

A stage is anything with a ``name`` and three coroutines: ``start`` (set up; an exception
aborts the process start), ``run`` (its work, in its own task, until it returns or is
cancelled) and ``stop`` (ask it to finish: drain a queue, close a socket). After ``stop``,
``run`` is given ``grace`` seconds (an optional attribute, 0 by default) to return on its
own and is then cancelled. The composition root (:mod:`relay.app`) lists the stages; this
module only runs them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

__all__ = ["Stage", "StageFailed", "Stages"]

log = logging.getLogger(__name__)


class Stage(Protocol):
    name: str

    async def start(self) -> None: ...

    async def run(self) -> None: ...

    async def stop(self) -> None: ...


class Stages:
    """Runs a list of stages: start all in order, stop all in reverse order."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = list(stages)
        self._running: list[tuple[Stage, asyncio.Task[None]]] = []
        self.failed = asyncio.Event()
        """Set when a stage's ``run`` ended with an error: the process is no longer whole."""
        self.failure = ""
        """The name of the first stage that failed."""

    async def start(self) -> None:
        """Start every stage in order; if one fails, stop those already started."""
        try:
            for stage in self.stages:
                await stage.start()
                task = asyncio.create_task(self._guarded(stage), name=stage.name)
                self._running.append((stage, task))
        except BaseException:
            await self.stop()
            raise

    async def _guarded(self, stage: Stage) -> None:
        try:
            await stage.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s stopped unexpectedly", stage.name)
            self.failure = self.failure or stage.name
            self.failed.set()
            raise

    async def stop(self) -> None:
        """Stop the started stages, the last started first."""
        while self._running:
            stage, task = self._running.pop()
            try:
                await stage.stop()
            except Exception:
                log.exception("%s did not stop cleanly", stage.name)
            grace = float(getattr(stage, "grace", 0.0))
            if grace and not task.done():
                await asyncio.wait([task], timeout=grace)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class StageFailed(Exception):
    """A stage stopped on its own: the process stops rather than run without it."""

    def __init__(self, stage: str) -> None:
        super().__init__(f"the {stage} stopped unexpectedly (its error is logged above)")
        self.stage = stage
