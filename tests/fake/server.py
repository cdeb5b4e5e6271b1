"""Running the fake: on a free port for a test, or standalone as the baseline of latency benchmarks."""

import argparse
import asyncio
import threading
from collections.abc import Iterable
from typing import Any, Self

from aiohttp import web

from tests.fake.anthropic import FAKE_ANTHROPIC_KEY, make_fake_anthropic_app
from tests.fake.app import FAKE_API_KEY, make_fake_app
from tests.fake.call import STATE, RecordedRequest
from tests.fake.content import TEXT, generate, reply_length
from tests.fake.endpoints import asks_concise, last_user_text
from tests.fake.tokens import count, load_encodings

# A test's server stops with requests still in flight (a timeout fault sleeps for an hour): don't wait for them.
SHUTDOWN_TIMEOUT_S = 0.5


class FakeUpstream:
    """The fake provider on a free port of 127.0.0.1.

    `async with FakeUpstream() as fake:` serves from the running loop. `with FakeUpstream() as fake:` serves
    from a thread of its own, for synchronous clients, which would otherwise block the loop that serves them.
    """

    def __init__(self, *, seed: int = 0, models: Iterable[str] = (), api_key: str = FAKE_API_KEY,
                 app: web.Application | None = None) -> None:
        """`app`: another fake provider's application (fake_anthropic())."""
        self.app = app or make_fake_app(seed=seed, models=models, api_keys=(api_key,))
        self.seed = seed
        self.api_key = api_key
        recorded = self.app[STATE].recorded
        assert recorded is not None  # make_fake_app records unless told not to
        self.requests: list[RecordedRequest] = recorded
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def expected_text(self, messages: list[dict[str, Any]], *, model: str = "gpt-4o", words: int | None = None) -> str:
        """The reply to a plain chat request with these messages (no tools, formats or token limit)."""
        length, prompt = reply_length(words, asks_concise(messages)), last_user_text(messages)
        reply = generate(seed=self.seed, prompt=prompt, index=0, length=length, shape=TEXT, model=model, budget=None)
        return reply.text

    @staticmethod
    def token_count(text: str, model: str = "gpt-4o") -> int:
        """Tokens of text as the fake counts them for model: o200k_base, or cl100k_base for gpt-4 and gpt-3.5."""
        return count(text, model)

    async def start(self) -> None:
        load_encodings()
        # handler_cancellation: a client that gives up cancels its handler, so a "timeout" fault ends with it
        self._runner = web.AppRunner(
            self.app, handler_cancellation=True, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __enter__(self) -> Self:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-upstream", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.start(), self._loop).result()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._thread is not None  # entered with `with`
        asyncio.run_coroutine_threadsafe(self.close(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


def fake_anthropic(*, seed: int = 0, api_key: str = FAKE_ANTHROPIC_KEY) -> FakeUpstream:
    """The fake Anthropic provider (tests/fake/anthropic.py), run like the OpenAI one."""
    return FakeUpstream(seed=seed, api_key=api_key, app=make_fake_anthropic_app(seed=seed, api_keys=(api_key,)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fake_upstream", description="A fake OpenAI provider.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--api-key", default=None, help=f"default {FAKE_API_KEY}, {FAKE_ANTHROPIC_KEY} for Anthropic")
    parser.add_argument("--anthropic", action="store_true", help="fake Anthropic's Messages API instead")
    args = parser.parse_args(argv)
    try:  # the benchmark baseline should be as quick as the proxy under test can be
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    if args.anthropic:
        app = make_fake_anthropic_app(seed=args.seed, api_keys=(args.api_key or FAKE_ANTHROPIC_KEY,), record=False)
    else:
        app = make_fake_app(seed=args.seed, api_keys=(args.api_key or FAKE_API_KEY,), record=False)
    load_encodings()
    web.run_app(
        app, host=args.host, port=args.port, access_log=None, handler_cancellation=True, print=announce, loop=loop
    )


def announce(message: str) -> None:
    """aiohttp's "Running on ..." line, flushed: a benchmark reading a pipe waits for it to know the port is open."""
    print(message, flush=True)
