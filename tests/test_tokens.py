"""proxy.accounting.tokens against counts OpenAI published, plus offline loading and malformed bodies.

Sources of the expected numbers:
- COOKBOOK: openai-cookbook, examples/How_to_count_tokens_with_tiktoken.ipynb (outputs of cells
  7, 11-13, 15 and 17, where its counts equal "prompt tokens counted by the OpenAI API").
- VISION: OpenAI "Images and vision" guide, "Calculating costs" (worked examples and tables).
"""

import base64
import hashlib
import math
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.accounting.image_tokens import DEFAULT_IMAGE_SIZE, PatchRule, TileRule, image_size
from proxy.accounting.tokens import ModelTokenizer, TokenCounter

REPO = Path(__file__).resolve().parent.parent
BPE_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"

# COOKBOOK cell 15.
CORPORATE_JARGON = [
    {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
    {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
    {"role": "system", "name": "example_assistant", "content": "Let's talk later when we're less busy about how to do better."},
    {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client deliverable."},
]
# COOKBOOK cell 17.
WEATHER_FUNCTION = {
    "name": "get_current_weather",
    "description": "Get the current weather in a given location",
    "parameters": {
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
            "unit": {
                "type": "string",
                "description": "The unit of temperature to return",
                "enum": ["celsius", "fahrenheit"],
            },
        },
        "required": ["location"],
    },
}
WEATHER_TOOLS = [{"type": "function", "function": WEATHER_FUNCTION}]
WEATHER_MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant that can answer to questions about the weather."},
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


@pytest.fixture(scope="module")
def counter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenCounter]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path_factory.mktemp("tiktoken")))
        yield TokenCounter()


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter so environment changes and tiktoken's memo do not leak.

    Every proxy points at a closed local port: any download attempt fails at once, never hangs.
    """
    base = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "tiktoken_cache_dir")}
    dead_proxies = {name: "http://127.0.0.1:9" for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}
    full_env = base | dead_proxies | env
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=full_env, capture_output=True, text=True, timeout=60
    )


def cache_file(cache_dir: Path, encoding_name: str) -> Path:
    return cache_dir / hashlib.sha1(BPE_URL.format(encoding_name).encode()).hexdigest()


# --- offline loading -----------------------------------------------------------------------------


def test_loads_into_an_empty_cache_without_network(tmp_path: Path) -> None:
    code = (
        "from proxy.accounting.tokens import TokenCounter\n"
        "c = TokenCounter()\n"
        "print(c.for_model('gpt-4o').text('お誕生日おめでとう'), c.for_model('gpt-4').text('お誕生日おめでとう'))\n"
    )
    result = run_python(code, {"TIKTOKEN_CACHE_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["8", "9"]  # COOKBOOK cell 13: o200k_base 8 tokens, cl100k_base 9
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        cache_file(tmp_path, name).name for name in ("cl100k_base", "o200k_base")
    )  # seeded under tiktoken's own names, no temp files left behind


def test_corrupted_cache_file_is_refused_by_tiktokens_hash_check(tmp_path: Path) -> None:
    corrupted = cache_file(tmp_path, "o200k_base")
    corrupted.write_bytes(b"aGVsbG8= 0\n")  # well-formed BPE lines, wrong sha256
    result = run_python("from proxy.accounting.tokens import TokenCounter; TokenCounter()", {"TIKTOKEN_CACHE_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "o200k_base.tiktoken" in result.stderr  # tiktoken went for a fresh copy ...
    assert not corrupted.exists()  # ... after deleting the file that failed its check


def test_default_cache_dir_belongs_to_thriftgate(tmp_path: Path) -> None:
    code = "import os, proxy.accounting.bpe_cache as t; print(t.cache_dir(), os.environ['TIKTOKEN_CACHE_DIR'])"
    result = run_python(code, {"HOME": str(tmp_path), "XDG_CACHE_HOME": ""})
    expected = str(tmp_path / ".cache" / "thriftgate" / "tiktoken")
    assert result.stdout.split() == [expected, expected], result.stderr


def test_unusable_home_falls_back_to_a_private_temp_dir(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "home"
    not_a_dir.write_text("")
    code = "import os, proxy.accounting.bpe_cache as t; d = t.cache_dir(); print(d, oct(os.stat(d).st_mode & 0o777))"
    result = run_python(code, {"HOME": str(not_a_dir), "XDG_CACHE_HOME": "", "TMPDIR": str(tmp_path)})
    directory, mode = result.stdout.split()
    assert Path(directory).parent == tmp_path and mode == "0o700", result.stderr


# --- published counts ----------------------------------------------------------------------------


def test_cookbook_string_count(counter: TokenCounter) -> None:
    assert counter.for_model("gpt-4o-mini").text("tiktoken is great!") == 6  # COOKBOOK cell 7


@pytest.mark.parametrize(
    ("model", "expected"),
    # COOKBOOK cell 15: "129 prompt tokens counted by the OpenAI API" (gpt-3.5-turbo, gpt-4-0613,
    # gpt-4) and 124 (gpt-4o, gpt-4o-mini).
    [("gpt-3.5-turbo", 129), ("gpt-4-0613", 129), ("gpt-4", 129), ("gpt-4o", 124), ("gpt-4o-mini", 124)],
)
def test_cookbook_chat_prompt(counter: TokenCounter, model: str, expected: int) -> None:
    assert counter.for_model(model).chat(CORPORATE_JARGON) == expected


@pytest.mark.parametrize(
    ("model", "expected"),
    # COOKBOOK cell 17: 105 prompt tokens (gpt-3.5-turbo, gpt-4) and 101 (gpt-4o, gpt-4o-mini).
    [("gpt-3.5-turbo", 105), ("gpt-4", 105), ("gpt-4o", 101), ("gpt-4o-mini", 101)],
)
def test_cookbook_chat_prompt_with_tools(counter: TokenCounter, model: str, expected: int) -> None:
    tokenizer = counter.for_model(model)
    assert tokenizer.chat(WEATHER_MESSAGES, tools=WEATHER_TOOLS) == expected
    # The legacy `functions` list and Responses' flat tools carry the same definitions.
    assert tokenizer.chat(WEATHER_MESSAGES, functions=[WEATHER_FUNCTION]) == expected
    flat_tool = {"type": "function", **WEATHER_FUNCTION}
    assert tokenizer.responses_input(WEATHER_MESSAGES, tools=[flat_tool]) == expected


# --- model families ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o-2024-08-06", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-4.5-preview", "o200k_base"),
        ("gpt-5-mini", "o200k_base"),
        ("o1-preview", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o4-mini-2025-04-16", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("ft:gpt-4o-mini-2024-07-18:my-org::abc123", "o200k_base"),
        ("GPT-4-Turbo", "cl100k_base"),
        ("gpt-4-0613", "cl100k_base"),
        ("gpt-3.5-turbo-instruct", "cl100k_base"),
        ("ft:gpt-3.5-turbo-0125:org::xyz", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("text-embedding-ada-002", "cl100k_base"),
    ],
)
def test_encoding_follows_the_model(counter: TokenCounter, model: str, encoding: str) -> None:
    tokenizer = counter.for_model(model)
    assert tokenizer.encoding.name == encoding and tokenizer.exact


@pytest.mark.parametrize(
    ("model", "factor"),
    [("claude-3-5-sonnet-latest", 1.2), ("anthropic/claude-opus-4", 1.2), ("gemini-2.0-flash", 1.1),
     ("meta-llama/Llama-3.3-70B-Instruct", 1.1), ("mistral-large", 1.1), ("deepseek-chat", 1.1),
     ("some-unknown-model", 1.1), ("ft:davinci-002:org::id", 1.1)],
)
def test_other_tokenizers_are_estimates(counter: TokenCounter, model: str, factor: float) -> None:
    tokenizer, reference = counter.for_model(model), counter.for_model("gpt-4o")
    text = "The quick brown fox jumps over the lazy dog. " * 10
    assert not tokenizer.exact
    assert tokenizer.text(text) == math.ceil(reference.text(text) * factor)
    assert tokenizer.chat(CORPORATE_JARGON) == math.ceil(124 * factor)
    assert tokenizer.prompt([1, 2, 3]) == 3  # token ids are already the model's own tokens


def test_for_model_memo_is_bounded(counter: TokenCounter, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TokenCounter, "MAX_MEMOISED_MODELS", 3)
    bounded = TokenCounter()  # the encodings are already loaded: cheap
    for i in range(10):
        bounded.for_model(f"client-made-name-{i}")
    assert len(bounded._by_model) == 3
    assert bounded.for_model("gpt-4o") is bounded.for_model("gpt-4o-2024-11-20")  # one per family


def test_model_must_be_a_string(counter: TokenCounter) -> None:
    with pytest.raises(ValueError, match="model"):
        counter.for_model(["gpt-4o"])  # type: ignore[arg-type]


# --- special tokens, prompts, outputs ------------------------------------------------------------


def test_special_token_text_is_plain_text(counter: TokenCounter) -> None:
    tokenizer = counter.for_model("gpt-4o")
    assert tokenizer.text("<|endoftext|>") > 1
    assert tokenizer.chat([{"role": "user", "content": "<|endofprompt|> hi"}]) > 7
    assert tokenizer.prompt(["<|endoftext|>", "<|fim_prefix|>"]) > 2


def test_prompt_and_embedding_shapes(counter: TokenCounter) -> None:
    tokenizer = counter.for_model("text-embedding-3-small")
    words = tokenizer.text("hello world")
    for count in (tokenizer.prompt, tokenizer.embedding_input):
        assert count("hello world") == words
        assert count(["hello world", "hello world"]) == 2 * words
        assert count([1, 2, 3]) == 3
        assert count([[1, 2], [3, 4, 5]]) == 5
        assert count([]) == 0


def test_completion_output_counts_text_and_tool_calls(counter: TokenCounter) -> None:
    tokenizer = counter.for_model("gpt-4o")
    call = {"id": "call_1", "type": "function", "function": {"name": "get_current_weather", "arguments": '{"location":"Paris"}'}}
    name_and_arguments = tokenizer.text("get_current_weather") + tokenizer.text('{"location":"Paris"}')
    assert tokenizer.completion_output("tiktoken is great!") == 6
    assert tokenizer.completion_output("", [call]) == name_and_arguments + 3
    assert tokenizer.completion_output(None, "not a list") == 0  # type: ignore[arg-type]


# --- responses -----------------------------------------------------------------------------------


def test_responses_items_are_framed_like_chat_messages(counter: TokenCounter) -> None:
    tokenizer = counter.for_model("gpt-4o")
    question = "What's the weather like in San Francisco?"
    assert tokenizer.responses_input(question) == tokenizer.chat([{"role": "user", "content": question}])
    assert tokenizer.responses_input(question, instructions="Be brief.") == tokenizer.chat(
        [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": question}]
    )
    parts = [{"role": "user", "content": [{"type": "input_text", "text": question}]}]
    assert tokenizer.responses_input(parts) == tokenizer.responses_input(question)
    call = {"type": "function_call", "call_id": "c1", "name": "get_current_weather", "arguments": "{}"}
    output = {"type": "function_call_output", "call_id": "c1", "output": "sunny"}
    reasoning = {"type": "reasoning", "summary": [{"type": "summary_text", "text": "sunny"}], "encrypted_content": "x" * 999}
    base = tokenizer.responses_input([])
    assert tokenizer.responses_input([call]) == base + 3 + 3 + tokenizer.text("get_current_weather") + tokenizer.text("{}")
    assert tokenizer.responses_input([output]) == base + 3 + tokenizer.text("sunny")
    assert tokenizer.responses_input([reasoning]) == base + tokenizer.text("sunny")
    assert tokenizer.responses_input([{"type": "item_reference", "id": "msg_1"}]) == base


# --- images --------------------------------------------------------------------------------------


def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    pixels = zlib.compress(b"\x00" * ((width + 1) * height))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def gif(width: int, height: int) -> bytes:
    # A one-pixel image on a width x height logical screen.
    screen = struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    image = b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00"
    return b"GIF89a" + screen + image + b";"


def jpeg(width: int, height: int) -> bytes:
    def segment(marker: int, data: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(data) + 2) + data

    jfif = segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    exif = segment(0xE1, b"Exif\x00\x00" + b"\x00" * 60_000)  # large metadata before the frame header
    quant = segment(0xDB, b"\x00" + bytes(range(1, 65)))
    frame = segment(0xC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
    huffman = segment(0xC4, b"\x00" + b"\x01" + b"\x00" * 15 + b"\x00")
    scan = segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    return b"\xff\xd8" + jfif + exif + quant + frame + huffman + scan + b"\x00\xff\xd9"


def webp(width: int, height: int, kind: bytes) -> bytes:
    if kind == b"VP8 ":
        payload = b"\x30\x01\x00\x9d\x01\x2a" + struct.pack("<HH", width, height) + b"\x00" * 8
    elif kind == b"VP8L":
        payload = b"\x2f" + struct.pack("<I", (width - 1) | (height - 1) << 14) + b"\x00" * 8
    else:
        payload = b"\x00" * 4 + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    chunk = kind + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


@pytest.mark.parametrize(
    ("url", "size"),
    [
        (data_url("image/png", png(640, 480)), (640, 480)),
        (data_url("image/gif", gif(300, 200)), (300, 200)),
        (data_url("image/jpeg", jpeg(1920, 1080)), (1920, 1080)),
        (data_url("image/webp", webp(1000, 700, b"VP8 ")), (1000, 700)),
        (data_url("image/webp", webp(1000, 700, b"VP8L")), (1000, 700)),
        (data_url("image/webp", webp(5000, 3000, b"VP8X")), (5000, 3000)),
        (data_url("image/png", b"not an image"), None),
        ("data:image/png;base64,%%%%not-base64", None),
        (data_url("image/jpeg", b"\xff\xd8\xff\xe0\x00"), None),  # truncated JPEG
    ],
)
def test_image_size_from_data_url_headers(url: str, size: tuple[int, int] | None) -> None:
    assert image_size(url) == size


def test_published_tile_examples() -> None:
    gpt_4o = TileRule(base=85, per_tile=170)
    assert gpt_4o.tokens(1024, 1024, "high") == 765  # VISION: "1024 x 1024 ... costs 765 tokens"
    assert gpt_4o.tokens(2048, 4096, "high") == 1105  # VISION: "2048 x 4096 ... costs 1105 tokens"
    assert gpt_4o.tokens(4096, 8192, "low") == 85  # VISION: "4096 x 8192 image in detail: low ... 85"


def test_published_patch_examples() -> None:
    one_per_patch = PatchRule(multiplier=1.0)
    assert one_per_patch.tokens(1024, 1024, "high") == 1024  # VISION: 32 x 32 patches = 1024 tokens
    assert one_per_patch.tokens(1800, 2400, "high") == 1452  # VISION: scaled to 33 x 44 patches
    # VISION's downscale keeps whole patches under the 1536 cap: a square lands on 39 x 39.
    assert one_per_patch.tokens(8000, 8000, "low") == 39 * 39


def image_part(url: str, detail: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url, "detail": detail}}


def part_tokens_in_chat(tokenizer: ModelTokenizer, part: dict) -> int:
    """Tokens one content part adds to a chat prompt."""
    without = tokenizer.chat([{"role": "user", "content": []}])
    return tokenizer.chat([{"role": "user", "content": [part]}]) - without


@pytest.mark.parametrize(
    ("model", "image", "detail", "expected"),
    [
        ("gpt-4o", png(1024, 1024), "high", 765),  # VISION worked example
        ("gpt-4o", jpeg(2048, 4096), "auto", 1105),  # VISION worked example; auto counted as high
        ("gpt-4o", gif(4096, 8192), "low", 85),  # VISION worked example
        ("gpt-4o-mini", png(1024, 1024), "high", 2833 + 4 * 5667),  # VISION table: 2833 base, 5667/tile
        ("gpt-5", png(1024, 1024), "high", 70 + 4 * 140),  # VISION table: 70 base, 140/tile
        ("o1", png(1024, 1024), "low", 75),  # VISION table: 75 base
        ("gpt-4.1-mini", png(1800, 2400), "high", math.ceil(1452 * 1.62)),  # VISION: 1452 patches x 1.62
        ("o4-mini", png(1024, 1024), "low", math.ceil(1024 * 1.72)),  # VISION: x 1.72; detail n/a
    ],
)
def test_image_parts_in_chat(counter: TokenCounter, model: str, image: bytes, detail: str, expected: int) -> None:
    part = image_part(data_url("image/png", image), detail)
    assert part_tokens_in_chat(counter.for_model(model), part) == expected


def test_remote_and_unreadable_images_assume_the_default_size(counter: TokenCounter) -> None:
    tokenizer = counter.for_model("gpt-4o")
    default = TileRule(base=85, per_tile=170).tokens(*DEFAULT_IMAGE_SIZE, "high")
    assert part_tokens_in_chat(tokenizer, image_part("https://example.com/cat.png", "high")) == default
    assert part_tokens_in_chat(tokenizer, image_part("data:image/png;base64,AAAA", "high")) == default
    responses_image = {"type": "input_image", "file_id": "file-123", "detail": "low"}
    assert part_tokens_in_chat(tokenizer, responses_image) == 85


def test_audio_and_file_parts_are_rough_estimates(counter: TokenCounter) -> None:
    tokenizer = counter.for_model("gpt-4o-audio-preview")
    one_minute_wav = base64.b64encode(b"\x00" * 48_000 * 60).decode()
    audio = {"type": "input_audio", "input_audio": {"data": one_minute_wav, "format": "wav"}}
    assert part_tokens_in_chat(tokenizer, audio) == 600  # ~10 tokens a second
    pdf = {"type": "file", "file": {"file_data": data_url("application/pdf", b"%PDF" + b"\x00" * 149_996)}}
    assert part_tokens_in_chat(tokenizer, pdf) == 2 * 1_300  # 150 KB: two pages
    assert part_tokens_in_chat(tokenizer, {"type": "input_file", "file_id": "file-1"}) == 1_300


# --- malformed bodies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda t: t.chat("hello"), "messages"),
        (lambda t: t.chat([{"role": "user", "content": "hi"}, "oops"]), r"messages\[1\]"),
        (lambda t: t.chat([{"role": "user", "content": 5}]), r"messages\[0\]\.content"),
        (lambda t: t.chat([{"role": "user", "content": ["hi"]}]), r"messages\[0\]\.content\[0\]"),
        (lambda t: t.prompt({"text": "hi"}), "prompt"),
        (lambda t: t.prompt(["hi", 1.5]), r"prompt\[1\]"),
        (lambda t: t.prompt([True]), r"prompt\[0\]"),
        (lambda t: t.embedding_input(None), "input"),
        (lambda t: t.responses_input(42), "input"),
        (lambda t: t.responses_input([{"role": "user", "content": "hi"}, 7]), r"input\[1\]"),
        (lambda t: t.responses_input([{"type": "function_call_output", "output": 3}]), r"input\[0\]\.output"),
    ],
)
def test_malformed_required_structures_name_the_field(counter: TokenCounter, call, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}: expected"):
        call(counter.for_model("gpt-4o"))


def test_optional_fields_of_the_wrong_type_are_skipped(counter: TokenCounter) -> None:
    tokenizer = counter.for_model("gpt-4o")
    plain = tokenizer.chat([{"role": "user", "content": "hi"}])
    odd = {"role": "user", "content": "hi", "name": 5, "tool_calls": "x", "function_call": [1], "refusal": {}}
    assert tokenizer.chat([odd], tools=[5, {"type": "web_search"}], functions="nope") == plain  # type: ignore[arg-type]
    image_without_url = {"type": "image_url", "image_url": {"detail": 9}}
    assert part_tokens_in_chat(tokenizer, image_without_url) == 765  # default size, detail "auto"
    unknown_part = {"type": "future_part", "id": "p1", "body": {"words": ["hi"]}}
    assert part_tokens_in_chat(tokenizer, unknown_part) == tokenizer.text("hi")  # its strings, not its ids


def test_deeply_nested_json_does_not_recurse(counter: TokenCounter) -> None:
    nested: list = ["hi"]
    for _ in range(5_000):
        nested = [nested]
    part = {"type": "future_part", "body": nested}
    assert part_tokens_in_chat(counter.for_model("gpt-4o"), part) == 1


# --- the memo of counted texts ---------------------------------------------------------------------


def test_a_repeated_text_is_encoded_once_and_counted_the_same(counter: TokenCounter) -> None:
    from proxy.accounting.count_memo import CountMemo

    encoded: list[str] = []
    tokenizer = counter.for_model("gpt-4o")
    reference = tokenizer.encoding.encode_ordinary
    memo = CountMemo(lambda text: encoded.append(text) or len(reference(text)))
    system = "You are a terse assistant for an airline. " * 20
    assert memo(system) == memo(system) == len(reference(system))
    assert encoded == [system]
    # Through the tokenizer: the conversation re-sent on the next turn counts the same as the first time.
    turn = [{"role": "system", "content": system}, {"role": "user", "content": "Where is my bag?"}]
    assert tokenizer.chat(turn) == tokenizer.chat([dict(m) for m in turn])


def test_the_memo_is_bounded_and_keeps_digests_not_texts() -> None:
    from proxy.accounting.count_memo import CountMemo

    counted: list[str] = []
    memo = CountMemo(lambda text: counted.append(text) or len(text), max_texts=5)
    for i in range(20):
        memo(str(i))
    assert len(memo) == 5  # "15" to "19"
    memo("15")  # used again: "16" is now the oldest, and goes first
    memo("new")
    counted.clear()
    assert [memo(text) for text in ("15", "17", "16")] == [2, 2, 2] and counted == ["16"]
    assert all(isinstance(key, bytes) and len(key) == 32 for key in memo._counts)  # no prompt text kept
    assert memo("\ud800 lone surrogate") == 16  # valid in JSON, digested all the same


def test_the_memo_counts_the_same_from_many_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from proxy.accounting.count_memo import CountMemo

    memo = CountMemo(len, max_texts=50)
    texts = [f"text number {i}" for i in range(200)]
    with ThreadPoolExecutor(8) as pool:
        counts = list(pool.map(memo, texts * 20))
    assert counts == [len(text) for text in texts * 20]
    assert 49 <= len(memo) <= 50  # two threads past the bound at once may both push one out
