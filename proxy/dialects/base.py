"""What every dialect answers, and the facts a request carries whatever its dialect.

A dialect is one wire format as the client speaks it at one endpoint: it turns a body into the
request's facts, answers the questions stages and policies ask of a body, reads usage from answers
and stream events in that format, and renders errors the way its SDKs expect them. Stages never ask
which dialect is in use; they ask the exchange's dialect.
"""

from typing import Any, Protocol

from aiohttp import web

from proxy.accounting.tokens import ModelTokenizer
from proxy.accounting.usage import Usage
from proxy.errors import ProxyError
from proxy.openai_wire import RequestFacts


class Dialect(Protocol):
    wire: str  # openai | anthropic: a body goes unchanged to a provider of the same wire
    endpoint: str  # chat | completions | responses | embeddings | messages | count_tokens
    max_output_fields: tuple[str, ...]  # the body fields that limit the output, in precedence order
    output_field_when_unset: str | None  # the one a cap sets when the client set none

    # ---- the request ----
    def parse(self, raw: bytes) -> dict[str, Any]: ...
    def facts(self, body: dict[str, Any]) -> RequestFacts: ...
    def ask_for_stream_usage(self, body: dict[str, Any]) -> bool: ...  # True: the body was edited
    def prompt_tokens(self, tokenizer: ModelTokenizer, body: dict[str, Any]) -> int: ...
    def last_user_text(self, body: dict[str, Any]) -> str: ...
    def has_tools(self, body: dict[str, Any]) -> bool: ...
    def has_images(self, body: dict[str, Any]) -> bool: ...
    def has_response_format(self, body: dict[str, Any]) -> bool: ...
    def add_instruction(self, body: dict[str, Any], instruction: str) -> bool: ...  # True: added

    # ---- answers and streams in this format ----
    def usage_of_answer(self, answer: Any) -> Usage | None: ...
    def answer_text(self, answer: Any) -> str: ...
    def stream_usage(self, chunk: dict[str, Any], previous: Usage | None) -> tuple[Usage, bool] | None: ...
    # (usage so far, final): Anthropic's message_start gives the input exactly and the output only at its start
    def stream_text(self, chunk: dict[str, Any]) -> str: ...
    def stream_ends(self, chunk: dict[str, Any]) -> bool: ...  # a parsed event that closes the stream
    def stream_done(self, events: bytes) -> bool: ...  # unparsed events that hold the stream's end
    def is_usage_only_chunk(self, chunk: dict[str, Any]) -> bool: ...  # the chunk only a proxy asked for

    # ---- errors ----
    def error_response(self, err: ProxyError) -> web.Response: ...
    def read_error(self, body: bytes) -> tuple[str, str]: ...  # (type, message) of an error body in this format

