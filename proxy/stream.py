"""SSE relay: events go to the client as they arrive; accounting parses as little as it can.

Bytes are passed through untouched except for two edits: the usage chunk the proxy asked for is
dropped when the client did not ask for it, and when the client did ask, it gains `cost_usd`.
Only events that carry a usage object are parsed (plus the first ones, until the first token shows,
for time to first token); the generated text is parsed from the kept events only when the stream
ended without usage and has to be counted locally.
"""

import time
from collections.abc import Callable

import orjson

from proxy import openai_wire as wire
from proxy.money import format_usd
from proxy.usage import Usage


class SseRelay:
    __slots__ = ("_endpoint", "_hide_usage_chunk", "_price", "_pending", "_data_events", "usage",
                 "first_text_at", "done")

    def __init__(
        self, endpoint: str, *, hide_usage_chunk: bool, price: Callable[[Usage], int | None] | None
    ) -> None:
        self._endpoint = endpoint
        self._hide_usage_chunk = hide_usage_chunk
        self._price = price  # set when the client asked for usage: it also gets the cost
        self._pending = b""
        self._data_events: list[bytes] = []  # kept unparsed, to count the text if usage never comes
        self.usage: Usage | None = None
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

    def output_text(self) -> list[str]:
        """The generated text, parsed from the kept events (only needed when usage never came)."""
        texts = []
        for event in self._data_events:
            chunk = _parsed(event)
            if chunk is not None:
                texts.append(wire.stream_delta_text(self._endpoint, chunk))
        return [t for t in texts if t]

    def _inspect(self, event: bytes) -> bytes:
        if b"[DONE]" in event and wire.event_data(event) == wire.DONE:
            self.done = True
            return event
        if not _carries_usage(event):
            self._data_events.append(event)
            if self.first_text_at is None:
                self._note_first_text(event)
            return event
        chunk = _parsed(event)
        if chunk is None:
            return event
        self._data_events.append(event)
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
        return self._with_cost(event, chunk, usage)

    def _note_first_text(self, event: bytes) -> None:
        chunk = _parsed(event)
        if chunk is not None and wire.stream_delta_text(self._endpoint, chunk):
            self.first_text_at = time.perf_counter()

    def _with_cost(self, event: bytes, chunk: dict, usage: Usage) -> bytes:
        nanos = self._price(usage) if self._price else None
        if nanos is None:
            return event
        # A Fragment keeps the exact decimal instead of a float's rounding.
        chunk["usage"]["cost_usd"] = orjson.Fragment(format_usd(nanos).encode())
        return wire.sse_event(chunk)


def _carries_usage(event: bytes) -> bool:
    """True when the event holds a usage object (not `"usage":null`), found without parsing."""
    at = event.find(b'"usage":')
    while at >= 0:
        rest = event[at + 8 : at + 12].lstrip()
        if rest.startswith(b"{"):
            return True
        at = event.find(b'"usage":', at + 8)
    return False


def _parsed(event: bytes) -> dict | None:
    data = wire.event_data(event)
    if data is None or data == wire.DONE:
        return None
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return chunk if isinstance(chunk, dict) else None
