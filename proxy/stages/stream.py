"""SSE relay: events go to the client as they arrive; accounting parses as little as it can.

The stream is in the client's own dialect (a provider of another dialect is translated instead, by
the leg's own stream translator, proxy/dialects). Bytes are passed through untouched except for two
edits of OpenAI streams: the usage chunk the proxy asked for is dropped when the client did not ask
for it, and when the client did ask, it gains `cost_usd`.
Only events that carry a usage object are parsed (plus the first ones, until the first token shows,
for time to first token); the generated text is parsed from the kept events only when the stream
ended without usage and has to be counted locally. This matters: a 50-word answer is 50 events.
"""

import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from proxy import sse
from proxy.accounting.money import format_usd
from proxy.accounting.usage import Usage


class SseRelay:
    __slots__ = ("_dialect", "_hide_usage_chunk", "_price", "_pending", "_kept", "usage", "partial_usage",
                 "first_text_at", "done", "errored")

    def __init__(
        self, dialect: Any, *, hide_usage_chunk: bool, price: Callable[[Usage], int | None] | None
    ) -> None:
        self._dialect = dialect  # proxy.dialects.Dialect
        self._hide_usage_chunk = hide_usage_chunk
        self._price = price  # set when the client asked for usage: it also gets the cost
        self._pending = b""
        self._kept: list[bytes] = []  # events kept unparsed, to count the text if usage never comes
        self.usage: Usage | None = None  # final usage
        self.partial_usage: Usage | None = None  # usage reported so far (Anthropic's message_start)
        self.first_text_at: float | None = None
        self.done = False  # saw the end of the stream ([DONE], the Responses API's last event, message_stop)
        self.errored = False  # the upstream sent an error event of its own

    def feed(self, data: bytes) -> bytes:
        """Bytes to send to the client now; an incomplete trailing event waits for its end.

        Only the first events (until the first token) and the event that carries usage are looked at
        one by one; the runs of events between them are passed on after a byte scan or two.
        """
        buffer = self._pending + data if self._pending else data
        used = sse.complete_events_end(buffer)
        self._pending = buffer[used:]
        block = buffer[:used]
        out: list[bytes] = []
        edited = False
        at = 0
        while at < used:
            usage_at = _usage_position(block, at) if self.first_text_at is not None else at
            if usage_at < 0:
                self._pass(block[at:], out)
                break
            start = _event_start(block, at, usage_at)
            if start > at:
                self._pass(block[at:start], out)
            end = sse.event_end(block, start)
            event = block[start:end]
            replacement = self._inspect(event)
            edited = edited or replacement is not event
            out.append(replacement)
            at = end
        return b"".join(out) if edited else block

    def _pass(self, events: bytes, out: list[bytes]) -> None:
        """Events with no usage in them, after the first token: relayed and kept as they are."""
        self._kept.append(events)
        if self._dialect.stream_done(events):
            self.done = True
        else:
            self._watch(events)
        out.append(events)

    def _watch(self, events: bytes) -> None:
        """Ends other than [DONE]: an error event of the upstream's own, the Responses API's failed response."""
        if b"error" in events and _has_error_event(events):  # one scan; the word in an answer costs a split
            self.errored = True
        elif self._dialect.endpoint == "responses" and b"response.failed" in events:
            self.done = True  # its last event, with no usage to carry

    def remainder(self) -> bytes:
        """What was left unterminated when the upstream closed: relayed as it came."""
        rest, self._pending = self._pending, b""
        return rest

    def events(self) -> Iterator[bytes]:
        """The relayed data events one by one, split only when someone asks (a cache writing the answer)."""
        for block in self._kept:
            yield from sse.split_events(block)[0]

    def output_text(self) -> list[str]:
        """The generated text, parsed from the kept events (only needed when usage never came)."""
        texts = []
        for event in self.events():
            chunk = sse.event_object(event)
            if chunk is not None:
                texts.append(self._dialect.stream_text(chunk))
        return [t for t in texts if t]

    def _inspect(self, event: bytes) -> bytes:
        if b"[DONE]" in event and sse.event_data(event) == sse.DONE:
            self.done = True
            return event
        if not _carries_usage(event):
            self._kept.append(event)
            self._watch(event)
            if self.first_text_at is None:
                self._note_first_text(event)
            if self._dialect.stream_done(event):
                self.done = True
            return event
        chunk = sse.event_object(event)
        if chunk is None:
            return event
        self._kept.append(event)
        if self._dialect.stream_ends(chunk):
            self.done = True
        reported = self._dialect.stream_usage(chunk, self.partial_usage)
        if reported is None:
            return event
        usage, final = reported
        self.partial_usage = usage
        if final:
            self.usage = usage
        if not self._dialect.is_usage_only_chunk(chunk):
            return event
        if self._hide_usage_chunk:
            return b""
        return self._with_cost(event, chunk, usage)

    def _note_first_text(self, event: bytes) -> None:
        chunk = sse.event_object(event)
        if chunk is not None and self._dialect.stream_text(chunk):
            self.first_text_at = time.perf_counter()

    def _with_cost(self, event: bytes, chunk: dict, usage: Usage) -> bytes:
        nanos = self._price(usage) if self._price else None
        if nanos is None:
            return event
        # A Fragment keeps the exact decimal instead of a float's rounding.
        chunk["usage"]["cost_usd"] = orjson.Fragment(format_usd(nanos).encode())
        return sse.sse_event(chunk)


# How an upstream's own error event starts: OpenAI's chat and completions; the Responses API and Anthropic.
_ERROR_EVENT_STARTS = (b'data: {"error"', b"event: error")


def _has_error_event(events: bytes) -> bool:
    return any(event.startswith(_ERROR_EVENT_STARTS) for event in sse.split_events(events)[0])


def _carries_usage(event: bytes) -> bool:
    return _usage_position(event, 0) >= 0


def _usage_position(block: bytes, start: int) -> int:
    """Where the first usage object (not `"usage":null`) after `start` is, found without parsing; -1 if none."""
    at = block.find(b'"usage":', start)
    while at >= 0:
        if block[at + 8 : at + 12].lstrip().startswith(b"{"):
            return at
        at = block.find(b'"usage":', at + 8)
    return -1


def _event_start(block: bytes, at: int, inside: int) -> int:
    """Where the event holding position `inside` begins (events from `at` on are whole)."""
    lf = block.rfind(b"\n\n", at, inside)
    crlf = block.rfind(b"\r\n\r\n", at, inside)
    return max(lf + 2 if lf >= 0 else at, crlf + 4 if crlf >= 0 else at)
