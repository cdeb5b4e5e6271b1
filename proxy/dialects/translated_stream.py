"""What every stream translator shares: whole events in, translated events out, accounting on the way.

It offers the pipeline what stages/stream.py's SseRelay offers (feed, remainder, events, output_text,
usage, partial_usage, first_text_at, done, errored); a subclass translates one parsed event at a time.
"""

from collections.abc import Iterator

from proxy import sse
from proxy.accounting.usage import Usage


class TranslatedStream:
    def __init__(self) -> None:
        self._pending = b""
        self._sent: list[bytes] = []  # the translated events, for hooks that read them after
        self._texts: list[str] = []  # the generated text, to count it if usage never comes
        self.usage: Usage | None = None
        self.partial_usage: Usage | None = None
        self.first_text_at: float | None = None
        self.done = False
        self.errored = False  # the upstream ended it with an error event, translated for the client

    def feed(self, data: bytes) -> bytes:
        buffer = self._pending + data
        events, used = sse.split_events(buffer)
        self._pending = buffer[used:]
        out = [translated for event in events for translated in self._translate(sse.event_data(event))]
        self._sent.extend(out)
        return b"".join(out)

    def remainder(self) -> bytes:
        self._pending = b""  # half an event cannot be translated; the stream is reported incomplete
        return b""

    def events(self) -> Iterator[bytes]:
        return iter(self._sent)

    def output_text(self) -> list[str]:
        return self._texts

    def _translate(self, data: bytes | None) -> list[bytes]:
        raise NotImplementedError
