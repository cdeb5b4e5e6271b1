"""HTTP/1.1 requests written byte for byte: HTTP clients normalise paths and refuse bad headers, attackers don't."""

import asyncio
import json
from dataclasses import dataclass

from multidict import CIMultiDict


@dataclass
class RawResponse:
    status: int
    headers: CIMultiDict[str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


async def raw_request(port: int, method: str, target: str, *, body: bytes = b"",
                      headers: dict[str, str] | None = None) -> RawResponse:
    """One request on a fresh connection, `target` sent exactly as given; the whole answer read."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}", "Connection: close"]
        head += [f"{name}: {value}" for name, value in (headers or {}).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        return parse_response(await reader.read())
    finally:
        writer.close()


def parse_response(data: bytes) -> RawResponse:
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = CIMultiDict(line.split(": ", 1) for line in lines[1:])
    if headers.get("Transfer-Encoding") == "chunked":
        rest = _unchunked(rest)
    return RawResponse(int(lines[0].split()[1]), headers, rest)


def _unchunked(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2:]
    return out
