"""The requests being handled, so that a stopping server can wait for them and then cut what is left.

A stop drains for at most `shutdown_grace_seconds` (less when a second signal says hurry), then cancels
the requests still running: each is settled and recorded on its way out (the ledger says `proxy_shutdown`),
for at most CUT_SECONDS, before the ledger is flushed and closed.
"""

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

CUT_SECONDS = 2.0  # for cancelled requests to settle and record themselves (a Redis call times out in 0.5 s)


class InFlight:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.stopping = False  # set once requests are being cut: the pipeline labels them
        # Python 3.11's asyncio.current_task() without a loop makes a getpid() system call (get_running_loop
        # checks for a fork): the loop is looked up once and handed to it.
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._tasks)

    @contextmanager
    def tracked(self) -> Iterator[None]:
        task = asyncio.current_task(self._loop) if self._loop is not None else None
        if task is None:  # the first request, or the app now runs in another loop
            self._loop = asyncio.get_running_loop()
            task = asyncio.current_task(self._loop)
        self._tasks.add(task)
        self._idle.clear()
        try:
            yield
        finally:
            self._tasks.discard(task)
            if not self._tasks:
                self._idle.set()

    async def drain(self, grace: float, hurry: asyncio.Event) -> int:
        """Waits until no request runs, `grace` seconds pass or `hurry` is set; cancels the rest and gives them
        CUT_SECONDS to record themselves. Returns how many were cut."""
        waits = [asyncio.ensure_future(self._idle.wait()), asyncio.ensure_future(hurry.wait())]
        try:
            await asyncio.wait(waits, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        cut = list(self._tasks)
        if not cut:
            return 0
        self.stopping = True
        for task in cut:
            task.cancel()
        await asyncio.wait(cut, timeout=CUT_SECONDS)
        return len(cut)
