"""The SSE relay on hand-made streams: what it passes, hides, edits and reads."""

import orjson
import pytest

from proxy.dialects import openai
from proxy.stages.stream import SseRelay


def event(obj: dict) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def chunk(text: str, *, role: bool = False) -> bytes:
    delta = {"role": "assistant", "content": text} if role else {"content": text}
    return event({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}],
                  "usage": None})


USAGE = event({"id": "c", "object": "chat.completion.chunk", "choices": [],
               "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}})
STREAM = [chunk("", role=True), chunk("one"), chunk(" two"), chunk(" three"), USAGE, b"data: [DONE]\n\n"]


def relay_all(reads: list[bytes], **kwargs) -> tuple[SseRelay, bytes]:
    relay = SseRelay(openai.CHAT, hide_usage_chunk=kwargs.get("hide", True), price=kwargs.get("price"))
    out = b"".join(relay.feed(data) for data in reads) + relay.remainder()
    return relay, out


def splits(stream: bytes) -> list[list[bytes]]:
    """The same bytes cut into reads in several ways, events split across reads included."""
    return [[stream], [stream[i:i + 1] for i in range(len(stream))], [stream[:37], stream[37:90], stream[90:]]]


@pytest.mark.parametrize("reads", splits(b"".join(STREAM)))
def test_usage_chunk_is_hidden_and_read(reads: list[bytes]) -> None:
    relay, out = relay_all(reads)
    assert out == b"".join(STREAM[:4]) + STREAM[5]
    assert (relay.usage.prompt_tokens, relay.usage.completion_tokens) == (7, 3)
    assert relay.done and relay.first_text_at is not None


@pytest.mark.parametrize("reads", splits(b"".join(STREAM)))
def test_a_client_that_asked_gets_the_usage_chunk_with_its_exact_cost(reads: list[bytes]) -> None:
    relay, out = relay_all(reads, hide=False, price=lambda usage: 12_345)
    last = [e for e in out.split(b"\n\n") if e.startswith(b"data: {")][-1]
    assert b'"cost_usd":0.000012345' in last
    assert orjson.loads(last[6:])["usage"]["completion_tokens"] == 3


def test_without_usage_the_text_is_read_from_the_kept_events() -> None:
    relay, out = relay_all([b"".join(STREAM[:4]) + STREAM[5]])
    assert relay.usage is None and out == b"".join(STREAM[:4]) + STREAM[5]
    assert "".join(relay.output_text()) == "one two three"
    assert len(list(relay.events())) == 5


def test_crlf_events_and_an_unterminated_tail() -> None:
    stream = b"".join(STREAM).replace(b"\n\n", b"\r\n\r\n")
    relay, out = relay_all([stream[:-5], stream[-5:]])
    assert relay.usage is not None and relay.done
    assert b'"usage":{' not in out and out.endswith(b"data: [DONE]\r\n\r\n")
    relay, out = relay_all([b"".join(STREAM[:3]) + b'data: {"cut'])
    assert out.endswith(b'data: {"cut') and not relay.done


def test_content_that_mentions_usage_or_done_is_not_mistaken() -> None:
    tricky = chunk('say "usage":{} and data: [DONE]')
    relay, out = relay_all([STREAM[0], STREAM[1], tricky, STREAM[5]])
    assert relay.usage is None and relay.done
    assert out == STREAM[0] + STREAM[1] + tricky + STREAM[5]
