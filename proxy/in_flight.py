"""The requests being handled, so that a stopping server can wait for them and then cut what is left.

A stop drains for at most `shutdown_grace_seconds` (less when a second signal says hurry), then cancels
the requests still running: each is settled and recorded on its way out (the ledger says `proxy_shutdown`),
for at most CUT_SECONDS, before the ledger is flushed and closed.
"""

import asyncio

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

    def tracked(self) -> "Tracked":
        """`with tracked():` around a request's handling, in its own task."""
        task = asyncio.current_task(self._loop) if self._loop is not None else None
        if task is None:  # the first request, or the app now runs in another loop
            self._loop = asyncio.get_running_loop()
            task = asyncio.current_task(self._loop)
        return Tracked(self._tasks, self._idle, task)

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


class Tracked:
    """A request's task among those in flight while the `with` lasts. A class rather than @contextmanager: a
    generator-based one costs 4x, on every request."""

    __slots__ = ("_tasks", "_idle", "_task")

    def __init__(self, tasks: set[asyncio.Task], idle: asyncio.Event, task: asyncio.Task) -> None:
        self._tasks, self._idle, self._task = tasks, idle, task

    def __enter__(self) -> None:
        self._tasks.add(self._task)
        self._idle.clear()

    def __exit__(self, kind, exc, traceback) -> bool:
        self._tasks.discard(self._task)
        if not self._tasks:
            self._idle.set()  # what a stopping server's drain waits for
        return False
