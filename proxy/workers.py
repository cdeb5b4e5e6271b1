"""`thriftgate serve --workers N`: N processes answer on one port, and /metrics counts them all.

Each worker binds the port with SO_REUSEPORT, so the kernel spreads connections over them. Metrics
go through prometheus_client's multiprocess mode: every worker writes its values to files in
PROMETHEUS_MULTIPROC_DIR and any worker's /metrics adds up all the files. prometheus_client reads
that variable when it is first imported, so workers are spawned (fresh interpreters, not forks)
after it is set. Every worker writes the same ledger: the SQLite file (WAL lets them) or PostgreSQL;
budgets and keys need the Redis store, shared by the workers as by replicas.

The supervisor forwards every SIGTERM/SIGINT to the workers (the first drains them, a second cuts
their requests short; neither cuts their ledger flush: proxy/serving.py), restarts a worker that dies,
and gives up when workers die at start.
"""

import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path

from proxy.config import Config
from proxy.accounting.metrics import forget_dead_worker

METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# A worker that dies sooner than this after its start is failing, not crashing once: restarting it
# would only loop (a port in use, an unreadable ledger).
MIN_UPTIME_SECONDS = 10.0

log = logging.getLogger("thriftgate.workers")
ServeOne = Callable[[Config, str], None]


def supervise(config: Config, count: int, serve_one: ServeOne) -> int:
    """Run `serve_one(config, metrics_dir)` in `count` worker processes until a signal stops them."""
    metrics_dir, owned = _fresh_metrics_dir()
    os.environ[METRICS_DIR_ENV] = metrics_dir  # inherited by every spawned worker
    supervisor = _Supervisor(config, serve_one, metrics_dir)
    try:
        return supervisor.run(count)
    finally:
        if owned:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _fresh_metrics_dir() -> tuple[str, bool]:
    """The operator's PROMETHEUS_MULTIPROC_DIR emptied of an earlier run's files, else a new temporary
    one that is ours to remove. Left-over files would add an old run's counts to this one's."""
    configured = os.environ.get(METRICS_DIR_ENV)
    if not configured:
        return tempfile.mkdtemp(prefix="thriftgate-metrics-"), True
    Path(configured).mkdir(parents=True, exist_ok=True)
    for stale in Path(configured).glob("*.db"):
        stale.unlink()
    return configured, False


def _worker_main(serve_one: ServeOne, config: Config, metrics_dir: str) -> None:
    os.setpgrp()  # out of the terminal's process group: Ctrl-C reaches the supervisor alone, which forwards it once
    threading.Thread(target=_stop_when_orphaned, args=(os.getppid(),), daemon=True).start()
    serve_one(config, metrics_dir)


def _stop_when_orphaned(supervisor: int) -> None:
    """A supervisor killed outright forwards no signal: its workers stop themselves rather than hold the port."""
    while os.getppid() == supervisor:
        time.sleep(1)
    os.kill(os.getpid(), signal.SIGTERM)  # the graceful way: requests in flight finish, the ledger is flushed


class _Supervisor:
    def __init__(self, config: Config, serve_one: ServeOne, metrics_dir: str) -> None:
        self._config = config
        self._serve_one = serve_one
        self._metrics_dir = metrics_dir
        self._context = multiprocessing.get_context("spawn")
        self._workers: dict[int, tuple[BaseProcess, float]] = {}  # sentinel -> (process, started)
        self._stopping = False

    def run(self, count: int) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop)
        for _ in range(count):
            self._start()
        log.info("supervising %d workers on port %s", count, self._config.server.port)
        failed = False
        while self._workers:
            for sentinel in wait(list(self._workers)):
                failed |= self._reap(sentinel)
        return 1 if failed else 0

    def _start(self) -> None:
        process = self._context.Process(
            target=_worker_main, args=(self._serve_one, self._config, self._metrics_dir), name="thriftgate-worker"
        )
        process.start()
        self._workers[process.sentinel] = (process, time.monotonic())

    def _reap(self, sentinel: int) -> bool:
        """Forget a worker that exited; start another unless stopping. True when workers fail at start."""
        process, started = self._workers.pop(sentinel)
        process.join()
        forget_dead_worker(process.pid, self._metrics_dir)
        if self._stopping:
            return False
        if time.monotonic() - started < MIN_UPTIME_SECONDS:
            log.error("worker %d exited with code %s right after starting; stopping", process.pid, process.exitcode)
            self._stop(signal.SIGTERM, None)
            return True
        log.error("worker %d exited with code %s; starting another", process.pid, process.exitcode)
        self._start()
        return False

    def _stop(self, signum: int, frame: object) -> None:
        self._stopping = True
        for process, _ in self._workers.values():
            process.terminate()  # SIGTERM: a worker drains (a second time: cuts) its requests, then flushes its ledger
