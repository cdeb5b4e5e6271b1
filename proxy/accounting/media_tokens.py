"""Prompt tokens of audio and file (PDF) parts: estimates, since OpenAI publishes no formula for either. Sizes
are worked out from the base64 data's length, never by decoding it.
"""

import math

from proxy.accounting.image_tokens import decoded_size

# Audio: gpt-4o audio input was priced at $100 per 1M tokens, about $0.06 a minute, hence ~10
# tokens a second. Duration is guessed from the size at typical bit rates (24 kHz 16-bit WAV,
# 128 kbit/s MP3).
_AUDIO_TOKENS_PER_SECOND = 10
_AUDIO_BYTES_PER_SECOND = {"wav": 48_000, "pcm16": 48_000, "mp3": 16_000}
# Files (PDFs): OpenAI puts each page's extracted text and an image of the page in context. Rough
# guess: ~500 text tokens + a 4-tile page image (765 on gpt-4o) per page, one page per 75 KB; a
# file_id or file_url alone is counted as one page.
_TOKENS_PER_FILE_PAGE = 1_300
_BYTES_PER_FILE_PAGE = 75_000


def audio_tokens(audio: object) -> int:
    """An `input_audio` part's {"data", "format"}."""
    if not isinstance(audio, dict) or not isinstance(data := audio.get("data"), str):
        return 0
    bytes_per_second = _AUDIO_BYTES_PER_SECOND.get(audio.get("format"), 16_000)
    return math.ceil(decoded_size(data) / bytes_per_second * _AUDIO_TOKENS_PER_SECOND)


def file_content_tokens(file: dict) -> int:
    """A file part's pages (its name is counted as text by the caller)."""
    data = file.get("file_data")
    size = decoded_size(data) if isinstance(data, str) else 0
    pages = max(1, math.ceil(size / _BYTES_PER_FILE_PAGE))
    return pages * _TOKENS_PER_FILE_PAGE
