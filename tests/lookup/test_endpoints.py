"""/v1/completions and /v1/responses looked up like chat: exact and semantic, whole and streamed, each
answered in its own endpoint's shape, and never across endpoints or tenants."""

from proxy.stages.auth import key_hash
from tests.lookup.conftest import sdk
from tests.lookup.test_end_to_end import DARK_MODE, FAQ, MODEL, settled

PARAPHRASE = "How can I switch on dark mode?"
POLICIES = [{"type": "exact_cache"}, FAQ]


async def test_completions_are_looked_up_and_served_as_text_completions(start_lookups, fake) -> None:
    proxy = await start_lookups(POLICIES)
    async with sdk(proxy) as client:
        first = await client.completions.with_raw_response.create(model=MODEL, prompt=DARK_MODE, max_tokens=40)
        await settled(proxy)
        exact = await client.completions.with_raw_response.create(model=MODEL, prompt=[DARK_MODE], max_tokens=40)
        similar = await client.completions.with_raw_response.create(model=MODEL, prompt=PARAPHRASE, max_tokens=40)
        stream = await client.completions.with_raw_response.create(
            model=MODEL, prompt=PARAPHRASE, max_tokens=40, stream=True, stream_options={"include_usage": True})
        chunks = [chunk async for chunk in stream.parse()]
    text = first.parse().choices[0].text
    assert first.headers["x-thriftgate-lookup"] == "miss" and text
    assert exact.headers["x-thriftgate-lookup"] == "exact-hit" and similar.headers["x-thriftgate-lookup"] == "semantic-hit"
    for hit in (exact.parse(), similar.parse()):
        assert hit.object == "text_completion" and hit.choices[0].text == text and hit.usage.total_tokens == 0
    assert stream.headers["x-thriftgate-lookup"] == "semantic-hit"
    assert "".join(c.choices[0].text for c in chunks if c.choices) == text
    assert chunks[-2].choices[0].finish_reason == "stop" and chunks[-1].usage.total_tokens == 0
    assert len(fake.requests) == 1


async def test_responses_are_looked_up_and_served_as_responses(start_lookups, fake) -> None:
    proxy = await start_lookups(POLICIES)
    async with sdk(proxy) as client:
        first = await client.responses.with_raw_response.create(model=MODEL, input=DARK_MODE, instructions="Be brief.")
        await settled(proxy)
        exact = await client.responses.with_raw_response.create(
            model=MODEL, instructions="Be brief.",
            input=[{"role": "user", "content": [{"type": "input_text", "text": DARK_MODE}]}])
        similar = await client.responses.with_raw_response.create(model=MODEL, input=PARAPHRASE,
                                                                  instructions="Be brief.")
        other_instructions = await client.responses.with_raw_response.create(model=MODEL, input=DARK_MODE)
        await settled(proxy)
        events = [event async for event in await client.responses.create(
            model=MODEL, input=PARAPHRASE, instructions="Be brief.", stream=True)]
    text = first.parse().output_text
    assert first.headers["x-thriftgate-lookup"] == other_instructions.headers["x-thriftgate-lookup"] == "miss"
    assert exact.headers["x-thriftgate-lookup"] == "exact-hit" and similar.headers["x-thriftgate-lookup"] == "semantic-hit"
    for hit in (exact.parse(), similar.parse()):
        assert hit.object == "response" and hit.status == "completed" and hit.output_text == text
        assert hit.usage.total_tokens == 0 and hit.instructions == "Be brief."
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == text
    assert events[-1].response.output_text == text
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert len(fake.requests) == 2


async def test_no_hit_across_endpoints_or_teams(start_lookups, fake) -> None:
    keys = {"tg-support-key-000000000000000000000": "support", "tg-billing-key-000000000000000000000": "billing"}
    proxy = await start_lookups(POLICIES, auth={"required": True, "keys": [
        {"id": team, "team": team, "sha256": key_hash(key)} for key, team in keys.items()]})
    support, billing = (sdk(proxy, api_key=key) for key in keys)
    async with support, billing:
        await support.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": DARK_MODE}])
        await settled(proxy)
        completion = await support.completions.with_raw_response.create(model=MODEL, prompt=DARK_MODE)
        response = await support.responses.with_raw_response.create(model=MODEL, input=DARK_MODE)
        await settled(proxy)
        other_team = await billing.responses.with_raw_response.create(model=MODEL, input=DARK_MODE)
        same_team = await support.responses.with_raw_response.create(model=MODEL, input=PARAPHRASE)
    assert [r.headers["x-thriftgate-lookup"] for r in (completion, response, other_team, same_team)] == [
        "miss", "miss", "miss", "semantic-hit"]


async def test_what_the_responses_api_cannot_replay_is_neither_stored_nor_looked_up(start_lookups, fake) -> None:
    proxy = await start_lookups(POLICIES)
    async with sdk(proxy) as client:
        for _ in range(2):  # cut at max_output_tokens: incomplete, never stored
            cut = await client.responses.with_raw_response.create(model=MODEL, input=DARK_MODE, max_output_tokens=16)
            await settled(proxy)
            assert cut.headers["x-thriftgate-lookup"] == "miss"
    assert len(fake.requests) == 2  # (background jobs are refused before any policy: tests/e2e/test_request_fields.py)
