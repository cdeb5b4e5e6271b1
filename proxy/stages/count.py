"""The count stage: tokens of a request's prompt, and usage estimated when the upstream gave none."""

import logging
from typing import Any

from proxy.accounting.tokens import ModelTokenizer, TokenCounter
from proxy.errors import BadRequest
from proxy.accounting.usage import Usage
from proxy.exchange import PromptCounter

log = logging.getLogger("thriftgate.count")


def prompt_tokens(tokenizer: ModelTokenizer, endpoint: str, body: dict[str, Any]) -> int:
    if endpoint == "chat":
        return tokenizer.chat(body.get("messages") or [], body.get("tools"), body.get("functions"))
    if endpoint == "completions":
        return tokenizer.prompt(body.get("prompt") or "")
    if endpoint == "embeddings":
        return tokenizer.embedding_input(body.get("input") or "")
    if endpoint == "responses":
        return tokenizer.responses_input(body.get("input") or "", body.get("instructions"), body.get("tools"))
    return 0


def prompt_counter(tokens: TokenCounter) -> PromptCounter:
    """What the pipeline hands each exchange to count its prompt (Exchange.prompt_tokens memoises it); a body
    it cannot read is the client's mistake, whichever stage (a budget, a policy's match) asked first."""

    def count(model: str, endpoint: str, body: dict[str, Any]) -> int:
        try:
            return prompt_tokens(tokens.for_model(model), endpoint, body)
        except ValueError as exc:
            raise BadRequest(f"The request cannot be counted: {exc}", code="invalid_type") from None

    return count


def estimate_usage(tokenizer: ModelTokenizer, endpoint: str, body: dict[str, Any] | None, output: list[str]) -> Usage:
    """Usage counted locally, flagged as estimated; a body the counter cannot read counts as 0."""
    prompt = 0
    if body is not None:
        try:
            prompt = prompt_tokens(tokenizer, endpoint, body)
        except ValueError as exc:
            log.warning("could not count the prompt: %s", exc)
    completion = tokenizer.completion_output("".join(output)) if output else 0
    return Usage(prompt_tokens=prompt, completion_tokens=completion, estimated=True)
