"""A stage that stops on its own stops the whole process (so a supervisor restarts it),
and the others are stopped in reverse order on the way out."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from relay.commands import until_signalled
from relay.diagnosis import describe
from relay.stages import StageFailed, Stages


class Recorder:
    def __init__(self, name: str, log: list[str], fail: bool = False) -> None:
        self.name = name
        self.log = log
        self.fail = fail
        self.release = asyncio.Event()

    async def start(self) -> None:
        self.log.append(f"start {self.name}")

    async def run(self) -> None:
        if self.fail:
            await self.release.wait()
            raise RuntimeError("the database protocol got out of step")
        await asyncio.Event().wait()

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")


class Process:
    """The shape until_signalled drives: a dsn, start, stop and the stages."""

    dsn = "postgresql://nobody@127.0.0.1:1/none"

    def __init__(self, stages: list[Any]) -> None:
        self.stages = Stages(stages)

    async def start(self) -> None:
        await self.stages.start()

    async def stop(self) -> None:
        await self.stages.stop()


async def test_a_failed_stage_stops_the_process_with_one_line() -> None:
    log: list[str] = []
    broken = Recorder("indexer", log, fail=True)
    process = Process([Recorder("writer", log), broken, Recorder("server", log)])
    running = asyncio.create_task(until_signalled(process))  # type: ignore[arg-type]
    async with asyncio.timeout(5):
        while "start server" not in log:
            await asyncio.sleep(0)
    assert not running.done()
    broken.release.set()
    with pytest.raises(StageFailed) as failed:
        async with asyncio.timeout(5):
            await running
    assert failed.value.stage == "indexer"
    assert process.stages.failure == "indexer"
    assert log[-3:] == ["stop server", "stop indexer", "stop writer"]
    line = describe(failed.value)
    assert line is not None and "indexer stopped unexpectedly" in line and "\n" not in line
