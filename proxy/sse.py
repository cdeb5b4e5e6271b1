"""Server-sent events as OpenAI and Anthropic send them: framing, payloads and writing one. Pure functions over
bytes: the stream stage, the translated legs and the lookup's stored streams feed them and get events back.
"""

from typing import Any

import orjson

DONE = b"[DONE]"  # OpenAI's last event's data


def split_events(buffer: bytes) -> tuple[list[bytes], int]:
    """Complete SSE events in `buffer` (each with its blank-line terminator) and the bytes used."""
    events = []
    start = 0
    # OpenAI ends events with LF LF; the SSE spec also allows CRLF CRLF. A terminator is searched for again
    # only once passed: searching the rest of the buffer for a CRLF CRLF at every event (OpenAI never sends
    # one) made a buffer of many events quadratic.
    lf = buffer.find(b"\n\n")
    crlf = buffer.find(b"\r\n\r\n")
    while lf >= 0 or crlf >= 0:
        end = crlf + 4 if crlf >= 0 and (lf < 0 or crlf < lf) else lf + 2
        events.append(buffer[start:end])
        start = end
        if 0 <= lf < start:
            lf = buffer.find(b"\n\n", start)
        if 0 <= crlf < start:
            crlf = buffer.find(b"\r\n\r\n", start)
    return events, start


def complete_events_end(buffer: bytes) -> int:
    """Where the last complete event in `buffer` ends (0 when there is none yet)."""
    lf = buffer.rfind(b"\n\n")
    crlf = buffer.rfind(b"\r\n\r\n")
    return max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)


def event_end(buffer: bytes, start: int) -> int:
    """Where the event that begins at `start` ends, its blank line included (the buffer holds it whole)."""
    lf = buffer.find(b"\n\n", start)
    crlf = buffer.find(b"\r\n\r\n", start, lf + 2 if lf >= 0 else len(buffer))
    return crlf + 4 if crlf >= 0 else lf + 2


def event_data(event: bytes) -> bytes | None:
    """The payload of an event's `data:` line(s), or None for comments and keep-alives."""
    data = None
    for line in event.splitlines():
        if line.startswith(b"data:"):
            chunk = line[5:].strip()
            data = chunk if data is None else data + b"\n" + chunk
    return data


def data_object(data: bytes | None) -> dict[str, Any] | None:
    """An event's data as a JSON object; None for comments, keep-alives, [DONE] and anything else."""
    try:
        chunk = orjson.loads(data) if data else None
    except orjson.JSONDecodeError:
        return None
    return chunk if isinstance(chunk, dict) else None


def event_object(event: bytes) -> dict[str, Any] | None:
    """The JSON object a whole event carries, or None (see data_object)."""
    return data_object(event_data(event))


def sse_event(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"
