"""What the record stage spends per request on the facts `thriftgate whatif` needs (issue #14).

    python -m bench.record_facts [--messages 20] [--words 300] [--rounds 20000]

Side by side in one run: the facts as shipped (images looked for only in a body that names one; an untagged
answer's words counted one time in 8), the same request with a language tag (its words always counted),
and the walk and split alone (what counting every answer, and walking every body, would cost).
"""

import argparse
import timeit

import orjson
from aiohttp.test_utils import make_mocked_request

from proxy.accounting.language import count_words
from proxy.dialects import openai
from proxy.exchange import Exchange
from proxy.stages.record import request_facts


def exchange(messages: int, words: int, language: str | None) -> Exchange:
    body = {"model": "gpt-4o", "messages": [{"role": "user" if i % 2 else "assistant", "content": "word " * 40}
                                            for i in range(messages)]}
    ex = Exchange(make_mocked_request("POST", "/v1/chat/completions"), "chat", openai.CHAT)
    ex.body, ex.raw_body = body, orjson.dumps(body)
    ex.answer = {"choices": [{"message": {"role": "assistant", "content": "word " * words}}]}
    ex.status, ex.tags, ex.language = 200, frozenset({"a", "b"}), language
    return ex


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--words", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=20000)
    args = parser.parse_args()
    untagged, tagged = exchange(args.messages, args.words, None), exchange(args.messages, args.words, "fr")
    text = openai.CHAT.answer_text(tagged.answer)
    cases = {
        "facts, untagged (as shipped)": lambda: request_facts(untagged),
        "facts, tagged (words counted)": lambda: request_facts(tagged),
        "has_images walk alone": lambda: openai.CHAT.has_images(untagged.body),
        "count_words alone": lambda: count_words(text),
    }
    print(f"{args.messages} messages, a {args.words}-word answer, {args.rounds} rounds each")
    for name, case in cases.items():
        seconds = timeit.timeit(case, number=args.rounds) / args.rounds
        print(f"  {name:32} {seconds * 1e6:8.2f} us")


if __name__ == "__main__":
    main()
