"""Image input tokens by OpenAI's published formulas, with image sizes read from data-URL headers.

Source: OpenAI "Images and vision" guide, section "Calculating costs". Two metering schemes:
- tiles (gpt-4o, gpt-4.1, gpt-4.5, gpt-5, o1, o3, ...): base tokens, plus tokens per 512px tile
  for detail "high";
- patches (gpt-4.1-mini/nano, gpt-5-mini/nano, o4-mini): one token per 32px patch, at most 1536,
  times a per-model multiplier; the guide gives no role to `detail` there.

Only the few bytes a header needs are base64-decoded, so a 20 MB data URL costs microseconds.
"""

import base64
import binascii
import math
import struct
from dataclasses import dataclass

# Remote URLs are never fetched (hot path), and a file_id's size is unknown: assume a 4:3 photo at
# the 2048px fit limit. Tile models charge it like any photo of 1024x768 or more (4 tiles), patch
# models their cap, so the estimate errs on the high side, which is the safe side for budgets.
DEFAULT_IMAGE_SIZE = (2048, 1536)

_TILE_FIT = 2048  # high detail: first fit within 2048x2048 ...
_TILE_SHORT_SIDE = 768  # ... then shrink the short side to 768 (never enlarge: 128x64 is 1 tile)
_TILE = 512
_PATCH = 32
_MAX_PATCHES = 1536
_MAX_JPEG_SEGMENTS = 64  # real files reach SOF within a handful of segments


@dataclass(frozen=True, slots=True)
class TileRule:
    base: int
    per_tile: int

    def tokens(self, width: int, height: int, detail: str) -> int:
        # "auto" lets OpenAI choose; counting it as "high" keeps pre-flight estimates on the safe side.
        if detail == "low":
            return self.base
        width, height = _scaled_to_fit(width, height, _TILE_FIT / max(width, height))
        width, height = _scaled_to_fit(width, height, _TILE_SHORT_SIDE / min(width, height))
        return self.base + self.per_tile * math.ceil(width / _TILE) * math.ceil(height / _TILE)


@dataclass(frozen=True, slots=True)
class PatchRule:
    multiplier: float

    def tokens(self, width: int, height: int, detail: str) -> int:
        return math.ceil(min(_patches(width, height), _MAX_PATCHES) * self.multiplier)


ImageRule = TileRule | PatchRule


def _scaled_to_fit(width: int, height: int, scale: float) -> tuple[int, int]:
    if scale >= 1:
        return width, height
    return max(1, int(width * scale)), max(1, int(height * scale))


def _patches(width: int, height: int) -> int:
    patches = math.ceil(width / _PATCH) * math.ceil(height / _PATCH)
    if patches <= _MAX_PATCHES:
        return patches
    # The guide's downscale: shrink to about the budget, then further so that whole patches fit.
    shrink = math.sqrt(_PATCH * _PATCH * _MAX_PATCHES / (width * height))
    patches_wide, patches_high = width * shrink / _PATCH, height * shrink / _PATCH
    shrink *= min(math.floor(patches_wide) / patches_wide, math.floor(patches_high) / patches_high)
    return math.ceil(int(width * shrink) / _PATCH) * math.ceil(int(height * shrink) / _PATCH)


def image_tokens(rule: ImageRule, url: str | None, detail: str) -> int:
    """Tokens of one image; a size that cannot be read from a data URL is DEFAULT_IMAGE_SIZE."""
    size = image_size(url) if url and url.startswith("data:") else None
    return rule.tokens(*(size or DEFAULT_IMAGE_SIZE), detail)


def _payload_start(data: str) -> int:
    """Where the base64 text of a data URL (`data:<mime>;base64,<payload>`) or of `data` starts.

    An offset rather than a slice: copying a 20 MB payload would cost more than everything else.
    """
    return data.find(",") + 1 if data.startswith("data:") else 0


def decoded_size(data: str) -> int:
    """Bytes that base64 `data` (or a data URL) decodes to, without decoding it."""
    padding = 2 if data.endswith("==") else 1 if data.endswith("=") else 0
    return (len(data) - _payload_start(data)) * 3 // 4 - padding


def image_size(data_url: str) -> tuple[int, int] | None:
    """(width, height) from a PNG, GIF, WebP or JPEG data URL's header; None if unreadable."""
    try:
        size = _header_size(data_url, _payload_start(data_url))
    except (binascii.Error, struct.error, ValueError):
        return None
    return size if size and min(size) > 0 else None


def _header_size(data: str, payload_start: int) -> tuple[int, int] | None:
    head = _decode_range(data, payload_start, 0, 32)
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return struct.unpack("<HH", head[6:10])
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp_size(head)
    if head[:2] == b"\xff\xd8":
        return _jpeg_size(data, payload_start)
    return None


def _decode_range(data: str, payload_start: int, start: int, length: int) -> bytes:
    """Bytes [start, start + length) of the base64 payload, decoding only the 4-char groups needed."""
    first_group, last_group = start // 3, (start + length + 2) // 3
    chunk = base64.b64decode(data[payload_start + first_group * 4 : payload_start + last_group * 4], validate=True)
    offset = start - first_group * 3
    return chunk[offset : offset + length]


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 ":  # lossy: 14-bit sizes after the key-frame start code
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":  # lossless: 14-bit (size - 1) fields packed after the 0x2f signature
        (bits,) = struct.unpack("<I", head[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: 24-bit (canvas size - 1) fields
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


def _jpeg_size(data: str, payload_start: int) -> tuple[int, int] | None:
    """Walk the marker segments to the first SOFn, decoding 9 bytes per segment (EXIF is skipped)."""
    position = 2
    for _ in range(_MAX_JPEG_SEGMENTS):
        segment = _decode_range(data, payload_start, position, 9)
        if len(segment) < 4 or segment[0] != 0xFF:
            return None
        marker = segment[1]
        # SOF0..SOF15 carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", segment[5:9])
            return width, height
        position += 2 + struct.unpack(">H", segment[2:4])[0]
    return None
