"""Dialects: the wire formats thriftgate speaks at its edges, as translations around one pipeline.

An ingress dialect (base.Dialect) is what a client speaks at one endpoint: OpenAI's (openai.py, over
proxy/openai_wire.py) or Anthropic's Messages API (anthropic.py). The exchange carries it, and the
stages and policies ask it about the body instead of asking which one it is.

A provider (providers.py) is what an upstream speaks. It gives each attempt a leg: the body, path and
headers for that upstream, and the answer turned back into the client's dialect (translate_*.py)
when the two differ. A body whose dialect is the provider's goes through as it came.
"""

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
