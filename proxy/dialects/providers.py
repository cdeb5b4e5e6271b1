"""Providers: what an upstream speaks, and the leg each attempt to it takes.

An upstream's descriptor carries its provider. For each attempt, `provider.leg(ex, upstream_name)`
gives the path and body to send (`headers` adds the provider's credentials and version), and turns
the answer back into the client's dialect:

- Passthrough: the client speaks the provider's dialect. The body goes as it came (or as the
  proxy's rules edited it) and the answer comes back byte for byte; `answer` and `stream` say so by
  returning None, and the pipeline reads usage with the client's own dialect.
- Translated: the client speaks another dialect. The body is translated (a 400 naming any field
  that cannot be), the answer, its usage read in the provider's own format (Anthropic's exact cache
  split included), is translated back, and errors are rendered in the client's shape naming the
  upstream. Status 529 (Anthropic's "overloaded") reaches an OpenAI client as 503, OpenAI's status
  for the same thing, and a 503 reaches an Anthropic client as 529; every other status is kept.
- Local: Anthropic's count_tokens against an OpenAI upstream, which has no such endpoint: answered
  by the proxy's own estimate (flagged in the ledger like any estimate: the count is free either way).

Translations: OpenAI chat <-> Anthropic Messages, both ways (chat_request/chat_answer,
messages_request/messages_answer). The other OpenAI endpoints reach an Anthropic upstream as a 400.
"""

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from proxy.accounting.usage import Usage
from proxy.dialects import anthropic, openai
from proxy.dialects.chat_answer import ChatStream, chat_completion
from proxy.dialects.chat_request import messages_body
from proxy.dialects.messages_answer import MessagesStream, message
from proxy.dialects.messages_request import chat_body
from proxy.errors import BadRequest, ProxyError

Price = Callable[[Usage], int | None]
_CLIENT_STATUS = {("anthropic", 529): 503, ("openai", 503): 529}  # (upstream wire, status) -> client status


class Passthrough:
    local = None

    def __init__(self, path: str, body: bytes | None) -> None:
        self.path = path
        self.body = body

    @staticmethod
    def answer(ex: Any, status: int, body: bytes) -> None:
        return None

    @staticmethod
    def stream(ex: Any, price: Price | None) -> None:
        return None


class Translated:
    """A leg whose body and answer are translated between the client's dialect and the provider's."""

    local = None

    def __init__(self, upstream: str, native: Any, path: str, body: dict[str, Any],
                 answer: Callable[[dict[str, Any]], dict[str, Any]],
                 stream: Callable[[Any, Price | None], Any]) -> None:
        self._upstream = upstream
        self._native = native  # the provider's dialect: reads usage and errors in its format
        self._translate_answer = answer
        self._translate_stream = stream
        self.path = path
        self.body = orjson.dumps(body)

    def answer(self, ex: Any, status: int, body: bytes) -> tuple[int, bytes]:
        if status >= 400:
            return self._error(ex, status, body)
        try:
            native = orjson.loads(body)
            translated = self._translate_answer(native)
        except (ValueError, LookupError, AttributeError, TypeError):  # not JSON, or not an answer of its kind
            ex.error_code = "upstream_invalid_answer"
            message = f"The upstream '{self._upstream}' answered with a body that is not a {self._native.wire} answer."
            return self._rendered(ex, ProxyError(message, code="upstream_invalid_answer"), 502)
        ex.usage = self._native.usage_of_answer(native)
        if ex.usage is None:
            ex.output_text.append(self._native.answer_text(native))
        ex.answer = translated
        return status, orjson.dumps(translated)

    def stream(self, ex: Any, price: Price | None) -> Any:
        return self._translate_stream(ex, price)

    def _error(self, ex: Any, status: int, body: bytes) -> tuple[int, bytes]:
        kind, message = self._native.read_error(body)
        err = ProxyError(f"The upstream '{self._upstream}' answered {status} ({kind}): {message}", code=kind)
        return self._rendered(ex, err, _CLIENT_STATUS.get((self._native.wire, status), status))

    @staticmethod
    def _rendered(ex: Any, err: ProxyError, status: int) -> tuple[int, bytes]:
        err.status = status
        err.type = "upstream_error"
        return status, ex.dialect.error_response(err).body


class Local:
    """An answer the proxy gives itself, without the upstream."""

    def __init__(self, body: bytes) -> None:
        self.local = body


class OpenAIProvider:
    wire = "openai"
    _FOREIGN = ("anthropic-",)  # a translated Anthropic client's headers stay with us

    def __init__(self, config: Any) -> None:
        self._name = config.name

    def leg(self, ex: Any) -> Passthrough | Translated | Local:
        if ex.dialect.wire == self.wire:
            return Passthrough(upstream_path(ex), ex.forward_body())
        if ex.dialect is anthropic.COUNT_TOKENS:
            return Local(orjson.dumps({"input_tokens": ex.prompt_tokens()}))
        return Translated(self._name, openai.CHAT, "/chat/completions", chat_body(ex.body, upstream=self._name),
                          message, lambda ex, price: MessagesStream())

    def credentials(self, client_headers: Mapping[str, str], api_key: str | None) -> dict[str, str]:
        if api_key:
            return {"Authorization": f"Bearer {api_key}"}
        given = client_headers.get("authorization")
        return {"Authorization": given} if given else {}

    def forwards(self, lowered_name: str) -> bool:
        return not lowered_name.startswith(self._FOREIGN)


class AnthropicProvider:
    wire = "anthropic"
    _FOREIGN = ("openai-",)

    def __init__(self, config: Any) -> None:
        self._name = config.name
        self._version = config.anthropic_version
        self._default_max_tokens = config.default_max_tokens

    def leg(self, ex: Any) -> Passthrough | Translated:
        if ex.dialect.wire == self.wire:
            if ex.prompt_cache is not None and ex.prompt_cache.apply(ex.body):
                ex.edit_body()
            return Passthrough(upstream_path(ex), ex.forward_body())
        if ex.dialect is not openai.CHAT:
            raise BadRequest(f"The model '{ex.model}' is served by the Anthropic upstream '{self._name}', which "
                             f"has no {ex.endpoint} endpoint; only chat completions are translated to it.",
                             param="model", code="untranslatable_request")
        body = messages_body(ex.body, default_max_tokens=self._default_max_tokens, api_version=self._version,
                             upstream=self._name)
        if ex.prompt_cache is not None:
            ex.prompt_cache.apply(body)
        include_usage = ex.client_wants_usage
        return Translated(self._name, anthropic.MESSAGES, "/messages", body, chat_completion,
                          lambda ex, price: ChatStream(include_usage=include_usage, price=price))

    def credentials(self, client_headers: Mapping[str, str], api_key: str | None) -> dict[str, str]:
        version = client_headers.get("anthropic-version") or self._version
        return {"x-api-key": api_key or "", "anthropic-version": version}

    def forwards(self, lowered_name: str) -> bool:
        return not lowered_name.startswith(self._FOREIGN)


PROVIDERS = {"openai": OpenAIProvider, "anthropic": AnthropicProvider}


def upstream_path(ex: Any) -> str:
    """The upstream base URL already ends in /v1; the rest of the path and the query follow it: the path as
    routing normalised it (stages/paths.py), never as the client spelled it."""
    return ex.upstream_path
