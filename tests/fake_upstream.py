"""The upstream LLM provider of every test and benchmark: a fake of OpenAI's API, faithful on the wire,
deterministic in what it says and counts, with latency and faults to order; `fake_anthropic()` is the
same for Anthropic's Messages API (tests/fake/anthropic.py says what it checks and answers).

    async with FakeUpstream() as fake:          # or `with FakeUpstream() as fake:` for synchronous clients
        client = AsyncOpenAI(base_url=fake.base_url, api_key=fake.api_key)
        ...
        fake.requests[-1].body                 # what the proxy forwarded (also .method, .path, .headers)
        fake.expected_text(messages)           # what a plain chat request with these messages gets back
        fake.token_count(text, model)

FakeUpstream(seed=0, models=(), api_key=FAKE_API_KEY); make_fake_app(seed=0, models=(), api_keys=(FAKE_API_KEY,),
record=True) for aiohttp's own test tools. Standalone, for benchmarks (nothing recorded, nothing logged):
    python -m tests.fake_upstream [--host 127.0.0.1] [--port 4200] [--seed 0] [--api-key KEY] [--anthropic]

Endpoints: POST /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/responses; GET /v1/models[/ID];
the Files and Batch APIs (tests/fake/batches.py): POST/GET /v1/files, GET/DELETE /v1/files/ID, GET
/v1/files/ID/content, POST/GET /v1/batches, GET /v1/batches/ID (each retrieve moves a batch one status on,
until it completes with output and error files), POST /v1/batches/ID/cancel.
Known models: MODELS (dated snapshots included), `models`, and any fake-* name. As OpenAI does:
  - answers name the dated snapshot of an alias (gpt-4o -> gpt-4o-2024-08-06);
  - a missing or wrong key, an unknown model or path get 401, 404 model_not_found, 404 "Invalid URL" bodies;
  - chat streams close each choice with an empty delta carrying finish_reason; /v1/responses streams send
    `event:` lines and end with response.completed (response.incomplete at max_output_tokens), no [DONE];
  - /v1/completions stops at 16 tokens unless max_tokens says otherwise;
  - a function call forced by tool_choice finishes "stop", one the model chose "tool_calls".

Request headers that steer it:
    x-fake-words: N                reply length in words (default 40; a quarter, at least 3, when a system or
                                   developer message or the instructions say "concise")
    x-fake-latency-ms: N           wait before the response headers
    x-fake-chunk-delay-ms: N       wait between stream events
    x-fake-fault: NAME             or the model fake-NAME; NAME is one of
                                   429 500 503 400   OpenAI's error bodies (429 with Retry-After, x-ratelimit-*)
                                   timeout           no answer for an hour, ended when the client hangs up
                                   cut               the body stops halfway and the connection drops
                                   no-usage          no usage anywhere, whatever stream_options asks
                                   garbage           200 with a body that is not JSON
    x-fake-fault-times: N          play the fault only on the first N requests with the same body (or the same
    x-fake-fault-key: K            x-fake-fault-key): a client's retries meet it N times, then succeed
    x-fake-retry-after: S          the 429's Retry-After (default 2)
    x-fake-cached-tokens: N        prompt tokens reported as read from the cache
    x-fake-cache-write-tokens: N   prompt tokens reported as written to the cache
    x-fake-cache-write-1h-tokens: N  (Anthropic) the part of those written for an hour
    x-fake-anthropic-usage: 1      usage as Anthropic reports it: input_tokens without cache reads and writes,
                                   cache_read_input_tokens, cache_creation_input_tokens, output_tokens
    x-fake-tool-call: 1            call the first tool (tool_choice naming a function or "required" does too)

Counts are exact: completion tokens are the o200k_base (cl100k_base for gpt-4, gpt-3.5) tokens of what was
returned, plus, for o1/o3/o4/gpt-5, reasoning tokens twice the visible ones; prompt tokens follow OpenAI's
chat rule (3 a message, 1 a name, 3 to prime the reply).
"""

from tests.fake.app import FAKE_API_KEY, MODELS, make_fake_app
from tests.fake.call import FAULTS, RecordedRequest
from tests.fake.content import WORDS
from tests.fake.anthropic import FAKE_ANTHROPIC_KEY
from tests.fake.server import FakeUpstream, fake_anthropic, main

__all__ = ["FAKE_ANTHROPIC_KEY", "FAKE_API_KEY", "FAULTS", "MODELS", "WORDS", "FakeUpstream", "RecordedRequest",
           "fake_anthropic", "make_fake_app", "main"]

if __name__ == "__main__":
    main()
