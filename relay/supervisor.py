"""``fitrelay serve --workers N``: N relay processes on one port, started and stopped
together."""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys

import msgspec

from relay.commands import migrate_command, run, serve
from relay.config import Config, parse_listen
from relay.diagnosis import describe
from relay.logs import setup_logging

__all__ = ["serve_workers"]

log = logging.getLogger("relay")


def worker_config(config: Config, number: int) -> Config:
    """Worker ``number``'s configuration: metrics on the configured port plus its number
    (each worker is scraped on its own), and the indexer started by every worker, the
    workers' indexers taking turns batch by batch under the indexer's table lock."""
    metrics = config.metrics
    if metrics.listen:
        host, port = parse_listen(metrics.listen)
        host = f"[{host}]" if ":" in host else host
        listen = f"{host}:{port + number if port else 0}"
        metrics = msgspec.structs.replace(metrics, listen=listen)
    return msgspec.structs.replace(config, metrics=metrics)


def worker_main(config: Config, dsn: str, number: int) -> None:
    setup_logging(config.logging.level, config.logging.format)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into SIGTERM
    log.info("worker %d: pid %d", number, os.getpid())
    try:
        run(serve(worker_config(config, number), dsn))
    except Exception as exc:
        line = describe(exc)
        if line is None:
            raise
        print(f"fitrelay: worker {number}: {line}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


def serve_workers(config: Config, dsn: str) -> int:
    """Run ``relay.workers`` relay processes on one port; stop them all on SIGINT/SIGTERM.

    Returns the exit status: 0 when they were asked to stop, 1 when one stopped on its own.
    """
    run(migrate_command(dsn, quiet=True))  # once, before the workers race for it
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=worker_main, args=(config, dsn, n), name=f"fitrelay-{n}")
        for n in range(config.relay.workers)
    ]
    for worker in workers:
        worker.start()
    stopping = False

    def stop(*_args: object) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.is_alive() and worker.pid is not None:
                os.kill(worker.pid, signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        # A worker that dies on its own takes the others down: a half relay is worse.
        while not stopping and all(worker.is_alive() for worker in workers):
            multiprocessing.connection.wait([w.sentinel for w in workers])
        failed = not stopping
        stop()
        for worker in workers:
            worker.join()
        return 1 if failed else 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
