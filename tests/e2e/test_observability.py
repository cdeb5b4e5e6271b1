"""What an operator reads back: metrics, the admin API, passthrough routes and health."""

import aiohttp
import openai

from tests.conftest import RunningProxy

MESSAGES = [{"role": "user", "content": "Name three rivers."}]


async def test_metrics_count_requests_tokens_and_spend(proxy: RunningProxy) -> None:
    async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key="sk-x", max_retries=0) as sdk:
        first = await sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        stream = await sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        [chunk async for chunk in stream]
    async with aiohttp.ClientSession() as session:
        async with session.get(proxy.url + "/metrics") as response:
            assert response.status == 200
            text = await response.text()
    assert 'thriftgate_requests_total{endpoint="chat",model="gpt-4o-mini",status="200"} 2.0' in text
    prompt_total = 2 * first.usage.prompt_tokens
    assert f'thriftgate_tokens_total{{model="gpt-4o-mini",type="prompt"}} {float(prompt_total)}' in text
    assert 'thriftgate_spend_usd_total{model="gpt-4o-mini",team="none"}' in text
    assert 'thriftgate_time_to_first_token_seconds_count{model="gpt-4o-mini"} 1.0' in text
    assert 'thriftgate_overhead_seconds_count{endpoint="chat"} 2.0' in text
    assert 'thriftgate_upstream_duration_seconds_count{upstream="fake"} 2.0' in text


async def test_admin_request_and_spend(proxy: RunningProxy) -> None:
    async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key="sk-x", max_retries=0) as sdk:
        raw = await sdk.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
        await sdk.embeddings.create(model="text-embedding-3-small", input="hello")
    request_id = raw.headers["x-thriftgate-request-id"]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{proxy.url}/admin/requests/{request_id}") as response:
            record = await response.json()
        assert record["request_id"] == request_id and record["model"] == "gpt-4o-mini"
        async with session.get(f"{proxy.url}/admin/spend", params={"by": "model", "since": "1h"}) as response:
            spend = await response.json()
        assert {row["model"] for row in spend["rows"]} == {"gpt-4o-mini", "text-embedding-3-small"}
        async with session.get(f"{proxy.url}/admin/spend", params={"by": "colour"}) as response:
            assert response.status == 400
            assert (await response.json())["error"]["param"] == "by"
        async with session.get(f"{proxy.url}/admin/spend", params={"since": "last tuesday"}) as response:
            assert response.status == 400
            assert (await response.json())["error"]["param"] == "since"
        async with session.get(f"{proxy.url}/admin/requests/tg-unknown") as response:
            assert response.status == 404


async def test_models_and_other_v1_paths_pass_through(proxy: RunningProxy, fake) -> None:
    async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key="sk-x", max_retries=0) as sdk:
        models = [m.id async for m in sdk.models.list()]
    assert "gpt-4o-mini" in models
    record = (await proxy.ledger.recent(1))[0]
    assert (record["endpoint"], record["cost_nanos"], record["status"]) == ("passthrough", None, 200)


async def test_health_and_readiness(proxy: RunningProxy) -> None:
    async with aiohttp.ClientSession() as session:
        for path in ("/healthz", "/readyz"):
            async with session.get(proxy.url + path) as response:
                assert response.status == 200


async def test_access_log_is_one_json_line_without_prompts_unless_asked(start_proxy, caplog) -> None:
    import json
    import logging

    caplog.set_level(logging.INFO, logger="thriftgate.access")
    secret_prompt = "my salary is 123456"
    for log_prompts in (False, True):
        proxy = await start_proxy(server={"access_log": True, "log_prompts": log_prompts},
                                  policies=[{"name": "brief", "type": "concise"}])
        async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key="sk-x", max_retries=0) as sdk:
            raw = await sdk.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": secret_prompt}])
        line = json.loads(caplog.records[-1].getMessage())
        assert line["request_id"] == raw.headers["x-thriftgate-request-id"]
        assert line["model"] == "gpt-4o-mini" and line["cost_nanos"] > 0 and line["status"] == 200
        assert line["policies"] == {"brief": {"mark": "treated"}}
        assert (line.get("prompt") == secret_prompt) is log_prompts
        assert (secret_prompt in caplog.records[-1].getMessage()) is log_prompts
