"""Load generator: N keep-alive connections, each sending one request after another for a fixed time.

A raw asyncio protocol with a pre-built request and a minimal HTTP/1.1 response reader (Content-Length
or chunked), not an HTTP client library: at a few tens of microseconds a request it stays far lighter
than anything it measures. Run by bench.proxy_overhead as its own process:

    python -m bench.loadgen --port P --connections C --warmup W --seconds S --out FILE [--stream] [--path /v1/...]
        [--messages]   (Anthropic's Messages API: POST /v1/messages with its headers, a Claude model)
        [--header "Name: value" ...]   (more request headers, e.g. the ones Portkey's gateway routes by)

stdout: "start" when the measured window opens, "stop" when it closes; then the results go to FILE as JSON.
Latency runs from writing the request to its last byte; time to first byte, to the first byte of the body
(for a stream, its first event).
"""

import argparse
import asyncio
import json
import time

import orjson

FAKE_KEY = "sk-fake-upstream-key"  # the fake upstreams' key (the Anthropic one is started with it too)


def chat_request(host: str, port: int, path: str, model: str, stream: bool, messages_api: bool = False,
                 key: str = FAKE_KEY, headers: tuple[str, ...] | list[str] = ()) -> bytes:
    """The same question as a chat completion, or (messages_api) as an Anthropic message with its headers."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Tell me about proxies and what they cost."}],
        "stream": stream,
    }
    extra = "".join(f"{header}\r\n" for header in headers)
    if messages_api:
        body["max_tokens"] = 1024
        extra += "anthropic-version: 2026-10-21\r\n"
    raw = orjson.dumps(body)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n{extra}"
        f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n\r\n"
    )
    return head.encode() + raw


class Connection(asyncio.Protocol):
    """One keep-alive connection; `send` resolves to (status, ttfb, end) perf_counter times."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future | None = None
        self._buf = bytearray()

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError("server closed the connection"))

    def send(self, request: bytes) -> asyncio.Future:
        self._buf.clear()
        self._head_done = False
        self._status = 0
        self._length: int | None = None  # Content-Length, or None for chunked
        self._chunk_left = 0  # bytes of the current chunk still to skip, its CRLF included
        self._first_body_at = 0.0
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self._waiter

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self._buf += data
        if not self._head_done:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buf[:end]).lower()
            del self._buf[: end + 4]
            self._head_done = True
            self._status = int(head[9:12])
            for line in head.split(b"\r\n")[1:]:
                if line.startswith(b"content-length:"):
                    self._length = int(line[15:])
        if self._buf and not self._first_body_at:
            self._first_body_at = now
        if self._length is not None:
            if len(self._buf) >= self._length:
                self._finish(now)
        elif self._consume_chunks():
            self._finish(now)

    def _consume_chunks(self) -> bool:
        """Skips whole chunks from the buffer; True once the terminating zero-size chunk has arrived."""
        buf = self._buf
        while buf:
            if self._chunk_left:
                taken = min(self._chunk_left, len(buf))
                del buf[:taken]
                self._chunk_left -= taken
                continue
            line_end = buf.find(b"\r\n")
            if line_end < 0:
                return False
            size = int(bytes(buf[:line_end]).split(b";")[0], 16)
            if size == 0:
                return buf.find(b"\r\n\r\n", line_end) == line_end  # no trailers
            del buf[: line_end + 2]
            self._chunk_left = size + 2
        return False

    def _finish(self, now: float) -> None:
        self._waiter.set_result((self._status, self._first_body_at or now, now))


async def run(args: argparse.Namespace) -> dict:
    loop = asyncio.get_running_loop()
    if args.messages:
        request = chat_request(args.host, args.port, "/v1/messages", "claude-sonnet-4-5", args.stream, True,
                               headers=args.header)
    else:
        request = chat_request(args.host, args.port, args.path, args.model, args.stream, key=args.key,
                               headers=args.header)
    start = time.perf_counter() + args.warmup
    stop = start + args.seconds
    latencies: list[float] = []
    ttfbs: list[float] = []
    errors: dict[str, int] = {}

    async def user() -> None:
        conn: Connection | None = None
        while time.perf_counter() < stop:
            try:
                if conn is None or conn.transport.is_closing():
                    _, conn = await loop.create_connection(Connection, args.host, args.port)
                sent = time.perf_counter()
                status, first, end = await conn.send(request)
            except (ConnectionError, OSError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                conn = None
                await asyncio.sleep(0.01)
                continue
            if status != 200:
                errors[str(status)] = errors.get(str(status), 0) + 1
            elif start <= end <= stop:
                latencies.append(end - sent)
                ttfbs.append(first - sent)
        if conn is not None:
            conn.transport.close()

    async def announce() -> None:
        await asyncio.sleep(max(start - time.perf_counter(), 0))
        print("start", flush=True)
        await asyncio.sleep(max(stop - time.perf_counter(), 0))
        print("stop", flush=True)

    await asyncio.gather(announce(), *(user() for _ in range(args.connections)))
    return {"seconds": args.seconds, "latencies": latencies, "ttfbs": ttfbs, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/v1/chat/completions")
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--key", default=FAKE_KEY, help="the bearer key sent (default: the fake upstream's)")
    parser.add_argument("--header", action="append", default=[], help='"Name: value", sent with every request')
    parser.add_argument("--messages", action="store_true", help="Anthropic's Messages API (overrides --path, --model)")
    parser.add_argument("--out", required=True, help="where the results go, as JSON")
    args = parser.parse_args()
    try:
        import uvloop

        result = uvloop.run(run(args))
    except ImportError:
        result = asyncio.run(run(args))
    with open(args.out, "w") as out:
        json.dump(result, out)


if __name__ == "__main__":
    main()
