"""Unpriced means a request to a model with no price that used tokens: the same number in `thriftgate spend`,
/ui, /admin/spend and Prometheus; refusals and pass-throughs are not unpriced."""

import aiohttp

from proxy.control.keys import key_hash

from tests.conftest import StartProxy
from tests.observability.test_ui import PageText
from tests.processes import thriftgate

KEY = "tg-unpriced-test-key"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


async def test_unpriced_is_one_number_everywhere(start_proxy: StartProxy, fake, tmp_path) -> None:
    proxy = await start_proxy(server={"max_body_bytes": 4096},
                              auth={"keys": [{"id": "bot", "team": "t", "sha256": key_hash(KEY)}]})
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as session:
        async def send(method: str, path: str, **kwargs) -> int:
            async with session.request(method, proxy.base_url + path, **kwargs) as response:
                await response.read()
                return response.status

        statuses = [
            await send("POST", "/chat/completions", json={**CHAT, "model": "llama-3.1-70b"}),  # unpriced, served
            await send("POST", "/chat/completions", json=CHAT),  # priced
            await send("POST", "/chat/completions", data=b"{not json"),  # refused before any model
            await send("POST", "/chat/completions", json=CHAT, headers={"Authorization": "Bearer tg-unknown"}),
            await send("POST", "/chat/completions", json={**CHAT, "pad": "x" * 5000}),  # too large
            await send("POST", "/chat/completions", json={**CHAT, "model": "llama-3.1-70b", "stream": "no"}),
            await send("GET", "/models"),  # passed through: priced by nobody, by design
        ]
        assert statuses == [200, 200, 400, 401, 413, 400, 200]
        async with session.get(proxy.url + "/ui") as response:
            page = PageText(await response.text())
        async with session.get(proxy.url + "/admin/spend?by=model&since=1h") as response:
            admin_rows = (await response.json())["rows"]
    assert page.text["month-unpriced"].strip() == "1"  # on 0d52d64: 5
    assert sum(row["unpriced_requests"] for row in admin_rows) == 1
    metrics = proxy.metrics.render().decode()
    assert [line for line in metrics.splitlines() if line.startswith("thriftgate_unpriced_requests_total")] == [
        'thriftgate_unpriced_requests_total{model="other"} 1.0']
    await proxy.ledger.flush()
    table = thriftgate("spend", "--ledger", str(tmp_path / "ledger.db"), "--since", "1h", "--by", "endpoint")
    assert table.returncode == 0, table.stderr
    rows = {line.split()[0]: line.split() for line in table.stdout.splitlines()[1:-1]}
    assert (rows["chat"][-1], rows["passthrough"][-1]) == ("1", "0")
