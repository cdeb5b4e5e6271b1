"""SSE relay: events go to the client as they arrive; a parsed copy feeds accounting.

Bytes are passed through untouched except for two edits: the usage chunk the proxy asked for is
dropped when the client did not ask for it, and when the client did ask, it gains `cost_usd`.
"""

import time
from collections.abc import Callable

import orjson

from proxy import openai_wire as wire
from proxy.money import format_usd
from proxy.usage import Usage


class SseRelay:
    __slots__ = ("_endpoint", "_hide_usage_chunk", "_price", "_pending", "usage", "text", "first_text_at", "done")

    def __init__(
        self, endpoint: str, *, hide_usage_chunk: bool, price: Callable[[Usage], int | None] | None
    ) -> None:
        self._endpoint = endpoint
        self._hide_usage_chunk = hide_usage_chunk
        self._price = price  # set when the client asked for usage: it also gets the cost
        self._pending = b""
        self.usage: Usage | None = None
        self.text: list[str] = []
        self.first_text_at: float | None = None
        self.done = False  # saw the end of the stream ([DONE], or response.completed)

    def feed(self, data: bytes) -> bytes:
        """Bytes to send to the client now; an incomplete trailing event waits for its end."""
        buffer = self._pending + data if self._pending else data
        events, used = wire.split_events(buffer)
        self._pending = buffer[used:]
        edited = False
        out = []
        for event in events:
            replacement = self._inspect(event)
            if replacement is not event:
                edited = True
            out.append(replacement)
        return b"".join(out) if edited else buffer[:used]

    def remainder(self) -> bytes:
        """What was left unterminated when the upstream closed: relayed as it came."""
        rest, self._pending = self._pending, b""
        return rest

    def _inspect(self, event: bytes) -> bytes:
        data = wire.event_data(event)
        if data is None:
            return event
        if data == wire.DONE:
            self.done = True
            return event
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return event
        if not isinstance(chunk, dict):
            return event
        text = wire.stream_delta_text(self._endpoint, chunk)
        if text:
            self.text.append(text)
            if self.first_text_at is None:
                self.first_text_at = time.perf_counter()
        if self._endpoint == "responses" and chunk.get("type") == "response.completed":
            self.done = True
        usage = wire.stream_chunk_usage(self._endpoint, chunk)
        if usage is None:
            return event
        self.usage = usage
        if self._endpoint == "responses" or not wire.is_usage_only_chunk(chunk):
            return event
        if self._hide_usage_chunk:
            return b""
        return self._with_cost(chunk, usage) if self._price else event

    def _with_cost(self, chunk: dict, usage: Usage) -> bytes:
        nanos = self._price(usage) if self._price else None
        if nanos is None:
            return wire.sse_event(chunk)
        # A Fragment keeps the exact decimal instead of a float's rounding.
        chunk["usage"]["cost_usd"] = orjson.Fragment(format_usd(nanos).encode())
        return wire.sse_event(chunk)
