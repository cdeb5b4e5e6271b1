"""Token usage of one request, normalised to OpenAI's semantics whatever the provider reported."""

from dataclasses import dataclass


@dataclass(slots=True)
class Usage:
    """Counts as OpenAI reports them: the detail counts are subsets of the two totals.

    Anthropic reports cache reads and writes apart from input tokens; openai_usage folds them into
    prompt_tokens so that pricing has one rule for every provider.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0  # part of prompt_tokens read from the provider's prompt cache
    cache_write_tokens: int = 0  # part of prompt_tokens written to the provider's prompt cache
    cache_write_1h_tokens: int = 0  # part of cache_write_tokens written for an hour (Anthropic's dearer rate)
    reasoning_tokens: int = 0  # part of completion_tokens spent on hidden reasoning
    estimated: bool = False  # True when counted locally because the upstream reported no usage

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def source(self) -> str:
        return "estimated" if self.estimated else "upstream"
