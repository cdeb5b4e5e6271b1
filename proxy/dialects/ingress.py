"""The priced paths and the dialect each speaks; the dialect of anything else a client sends."""

from collections.abc import Mapping

from proxy.dialects import anthropic, openai
from proxy.dialects.base import Dialect

# The priced endpoints; any other /v1/* path is passed through unpriced.
INGRESS: dict[str, Dialect] = {
    "/v1/chat/completions": openai.CHAT,
    "/v1/completions": openai.COMPLETIONS,
    "/v1/embeddings": openai.EMBEDDINGS,
    "/v1/responses": openai.RESPONSES,
    "/v1/messages": anthropic.MESSAGES,
    "/v1/messages/count_tokens": anthropic.COUNT_TOKENS,
}
VERSION_HEADER = "anthropic-version"


def for_request(path: str, headers: Mapping[str, str]) -> Dialect:
    """The dialect to answer an unpriced path or a routing error in: Anthropic's for its paths and for
    clients that send its version header (its SDKs always do), OpenAI's otherwise."""
    if path.startswith("/v1/messages") or VERSION_HEADER in headers:
        return anthropic.MESSAGES
    return openai.CHAT
