"""The count stage: tokens of a request's prompt (each dialect counts its own bodies), and usage estimated
when the upstream gave none."""

import logging
from dataclasses import replace
from typing import Any

from proxy.accounting.tokens import ModelTokenizer, TokenCounter
from proxy.errors import BadRequest
from proxy.accounting.usage import Usage
from proxy.exchange import PromptCounter

log = logging.getLogger("thriftgate.count")


def prompt_counter(tokens: TokenCounter) -> PromptCounter:
    """What the pipeline hands each exchange to count its prompt (Exchange.prompt_tokens memoises it):
    the client's dialect counts its own body, with the tokenizer of the model that answers. A body it cannot
    read is the client's mistake, whichever stage (a budget, a policy's match) asked first."""

    def count(model: str, dialect: Any, body: dict[str, Any]) -> int:
        try:
            return dialect.prompt_tokens(tokens.for_model(model), body)
        except ValueError as exc:
            raise BadRequest(f"The request cannot be counted: {exc}", code="invalid_type") from None

    return count


def estimate_usage(tokenizer: ModelTokenizer, dialect: Any, body: dict[str, Any] | None, output: list[str],
                   reported: Usage | None = None) -> Usage:
    """Usage counted locally, flagged as estimated; a body the counter cannot read counts as 0.

    `reported`: what a stream cut short had reported at its start (Anthropic's message_start): its input
    counts are exact and kept, its output count is only a floor."""
    completion = tokenizer.completion_output("".join(output)) if output else 0
    if reported is not None:
        return replace(reported, completion_tokens=max(reported.completion_tokens, completion), estimated=True)
    prompt = 0
    if body is not None:
        try:
            prompt = dialect.prompt_tokens(tokenizer, body)
        except ValueError as exc:
            log.warning("could not count the prompt: %s", exc)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, estimated=True)
