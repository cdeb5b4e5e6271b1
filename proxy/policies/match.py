"""A policy's `match`, compiled once at load; cheap tests run first, counting the prompt last."""

import fnmatch
import re
from collections.abc import Callable

from proxy.exchange import Exchange
from proxy.policies.base import MatchConfig

Test = Callable[[Exchange], bool]


class Matcher:
    __slots__ = ("_tests",)

    def __init__(self, config: MatchConfig) -> None:
        self._tests: tuple[Test, ...] = tuple(_cheap_tests(config) + _counting_tests(config))

    def matches(self, ex: Exchange) -> bool:
        for test in self._tests:  # a loop, not all(generator): this runs per policy per request
            if not test(ex):
                return False
        return True


def _cheap_tests(c: MatchConfig) -> list[Test]:
    tests: list[Test] = []
    if c.models is not None:
        pattern = re.compile("|".join(fnmatch.translate(p) for p in c.models) or "(?!)")
        tests.append(lambda ex: pattern.match(ex.requested_model) is not None)
    if c.endpoints is not None:
        endpoints = frozenset(c.endpoints)
        tests.append(lambda ex: ex.endpoint in endpoints)
    if c.teams is not None:
        teams = frozenset(c.teams)
        tests.append(lambda ex: ex.team in teams)
    if c.keys is not None:
        keys = frozenset(c.keys)
        tests.append(lambda ex: ex.key_id in keys)
    if c.tags is not None:
        tags = frozenset(c.tags)
        tests.append(lambda ex: not tags.isdisjoint(ex.tags))
    if c.stream is not None:
        tests.append(lambda ex: ex.stream == c.stream)
    if c.min_max_tokens is not None:
        tests.append(lambda ex: ex.max_output_tokens is not None and ex.max_output_tokens >= c.min_max_tokens)
    if c.max_max_tokens is not None:
        tests.append(lambda ex: ex.max_output_tokens is not None and ex.max_output_tokens <= c.max_max_tokens)
    for flag, question in ((c.has_tools, "has_tools"), (c.has_images, "has_images"),
                           (c.has_response_format, "has_response_format")):
        if flag is not None:
            tests.append(lambda ex, flag=flag, question=question: getattr(ex.dialect, question)(ex.body) == flag)
    if c.last_message_regex is not None:
        regex = re.compile(c.last_message_regex)
        tests.append(lambda ex: regex.search(ex.dialect.last_user_text(ex.body)) is not None)
    return tests


def _counting_tests(c: MatchConfig) -> list[Test]:
    tests: list[Test] = []
    if c.min_prompt_tokens is not None:
        tests.append(lambda ex: ex.prompt_tokens() >= c.min_prompt_tokens)
    if c.max_prompt_tokens is not None:
        tests.append(lambda ex: ex.prompt_tokens() <= c.max_prompt_tokens)
    # Without a requested output limit the ratio is unknown, so a ratio condition does not match.
    if c.min_prompt_to_output_ratio is not None:
        tests.append(lambda ex: ex.max_output_tokens is not None
                     and ex.prompt_tokens() >= c.min_prompt_to_output_ratio * ex.max_output_tokens)
    if c.max_prompt_to_output_ratio is not None:
        tests.append(lambda ex: ex.max_output_tokens is not None
                     and ex.prompt_tokens() <= c.max_prompt_to_output_ratio * ex.max_output_tokens)
    return tests
