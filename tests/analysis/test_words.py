"""Tokens per word: words of whole answers, the language header, `thriftgate spend --by language`, the metric."""

import json

import aiohttp
import pytest

from proxy.accounting.language import count_words, language_of, metric_label
from proxy.analysis.words import tokens_per_word
from proxy.appkeys import CONFIG, METRICS
from proxy.cli import main
from proxy.errors import BadRequest
from proxy.stages import record
from tests.conftest import RunningProxy

CHAT = {"messages": [{"role": "user", "content": "Name three rivers."}]}


@pytest.mark.parametrize(("text", "words"), [
    ("The quick brown fox jumps.", 5), ("don't  stop\nnow", 3), ("", 0),
    ("Ça va très bien, merci", 5), ("日本語のテキストです。", 10), ("東京は、Tokyo です", 6),
    ("Привет, как дела?", 3),
])
def test_words(text: str, words: int) -> None:
    assert count_words(text) == words


@pytest.mark.parametrize("tag", ["english", "e", "en_US", "en-", "zh-Hant-TW-x-y-z", "a" * 50])
def test_bad_language_tags(tag: str) -> None:
    with pytest.raises(BadRequest):
        language_of(tag)


def test_language_tags_and_their_metric_label() -> None:
    assert language_of(" pt-BR ") == "pt-br" and language_of("") is None and language_of(None) is None
    assert [metric_label(t) for t in ("pt-br", "zh-hant-tw", "tlh", None)] == ["pt", "zh", "other", "none"]


def test_tokens_per_word_by_language_and_family() -> None:
    def row(model: str, language: str | None, words: int, tokens: int, reasoning: int = 0) -> dict:
        return {"model": model, "language": language, "output_words": words, "completion_tokens": tokens,
                "reasoning_tokens": reasoning, "cost_nanos": 100}

    rows = [row("gpt-4o-mini", "en", 100, 130), row("gpt-4o-mini", "en-gb", 100, 130), row("gpt-4o-mini", "hi", 100, 390),
            row("gpt-4o-mini", None, 50, 70), row("claude-sonnet-4-5", "en", 10, 14), row("o3-mini", "en", 10, 53, 40),
            row("gpt-4o", "fr", 0, 10)]  # no words counted: left out
    report = {(r["language"], r["family"]): r for r in tokens_per_word(rows)}
    assert report["hi", "gpt-4o-mini"]["tokens_per_word"] == 3.9 and report["hi", "gpt-4o-mini"]["vs_english"] == 3.0
    assert report["(all)", "gpt-4o-mini"]["answers"] == 4 and report["(all)", "gpt-4o-mini"]["words"] == 350
    assert report["(untagged)", "gpt-4o-mini"]["tokens_per_word"] == 1.4
    assert report["en", "claude"]["tokens_per_word"] == 1.4
    assert report["en", "o3"]["output_tokens"] == 13  # reasoning tokens are not words' tokens
    assert ("fr", "gpt-4o") not in report


async def test_spend_by_language_through_the_proxy(proxy: RunningProxy, capsys, monkeypatch) -> None:
    monkeypatch.setattr(record, "UNTAGGED_WORDS_SAMPLE", 1)  # every answer counted
    async with aiohttp.ClientSession() as session:
        for language, words in (("en", 30), ("fr", 12), (None, 7)):
            headers = {"x-fake-words": str(words)} | ({"x-thriftgate-language": language} if language else {})
            async with session.post(proxy.base_url + "/chat/completions", json={"model": "gpt-4o-mini", **CHAT},
                                    headers=headers) as response:
                assert response.status == 200
    await proxy.ledger.flush()
    # The fake's words are one token each: one token per word, whatever the tag says.
    assert main(["spend", "--by", "language", "--ledger", proxy.app[CONFIG].ledger.path, "--json"]) == 0
    report = {(r["language"], r["family"]): r for r in json.loads(capsys.readouterr().out)}
    assert report["(all)", "gpt-4o-mini"]["words"] == 49 and report["(all)", "gpt-4o-mini"]["tokens_per_word"] == 1.0
    assert report["fr", "gpt-4o-mini"]["vs_english"] == 1.0
    assert main(["spend", "--by", "language", "--ledger", proxy.app[CONFIG].ledger.path]) == 0
    assert "tokens/word" in capsys.readouterr().out
    metrics = proxy.app[METRICS].render().decode()
    assert 'thriftgate_output_words_total{language="fr",model="gpt-4o-mini"} 12.0' in metrics
    assert 'thriftgate_output_words_tokens_total{language="none",model="gpt-4o-mini"} 7.0' in metrics


async def test_untagged_answers_are_sampled_tagged_ones_all_counted(proxy: RunningProxy) -> None:
    async with aiohttp.ClientSession() as session:
        for headers in [{}] * record.UNTAGGED_WORDS_SAMPLE + [{"x-thriftgate-language": "de"}] * 3:
            async with session.post(proxy.base_url + "/chat/completions", json={"model": "gpt-4o-mini", **CHAT},
                                    headers={"x-fake-words": "5", **headers}) as response:
                assert response.status == 200
    rows = await proxy.ledger.recent(20)
    counted = [(row["language"], row["output_words"]) for row in rows if row["output_words"]]
    assert sorted(counted, key=str) == [("de", 5), ("de", 5), ("de", 5), (None, 5)]
