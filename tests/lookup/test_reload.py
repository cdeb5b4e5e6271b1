"""POST /admin/reload with changed lookup settings: the policy serves at the new operating point, and what
GET /admin/lookup/operating reports is the chain that serves (never a refused config's, nor a removed policy's)."""

from typing import Any

import aiohttp
import pytest
import yaml

from tests.conftest import base_config
from tests.lookup.conftest import EMBEDDERS, sdk
from tests.lookup.test_end_to_end import DARK_MODE, FAQ, chat

MASTER = "master-key-for-lookup-reload"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
UNCALIBRATED = {name: value for name, value in FAQ.items() if name != "threshold"}


async def test_a_reload_moves_the_operating_point_and_a_refused_one_moves_nothing(
        start_proxy, local_models, clock, fake, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THRIFTGATE_MASTER_KEY", MASTER)  # a reload is an admin write
    path = tmp_path / "thriftgate.yaml"
    config = {**base_config(fake.base_url, tmp_path), "embedders": EMBEDDERS}

    def write(*policies: dict, **changes: Any) -> None:
        path.write_text(yaml.safe_dump({**config, "policies": list(policies), **changes}))

    write({**FAQ, "threshold": 0.99})
    proxy = await start_proxy(config_path=path, clock=clock, local_models=local_models)
    async with aiohttp.ClientSession(headers=ADMIN) as session, sdk(proxy) as client:
        async def reload() -> int:
            async with session.post(proxy.url + "/admin/reload") as response:
                return response.status

        async def operating() -> dict:
            async with session.get(proxy.url + "/admin/lookup/operating") as response:
                return await response.json()

        await chat(client, proxy, DARK_MODE)
        strict = await chat(client, proxy, "How can I turn on dark mode?")
        assert strict.headers["x-thriftgate-lookup"] == "miss" and (await operating())["faq"]["threshold"] == 0.99

        write({**FAQ, "threshold": 0.7})
        assert await reload() == 200
        assert (await operating())["faq"]["threshold"] == 0.7
        lax = await chat(client, proxy, "How do I switch on dark mode?")
        assert lax.headers["x-thriftgate-lookup"] == "semantic-hit"

        # Refused once faq is built: the second policy's operating point needs an embedder that is not running.
        write({**FAQ, "threshold": 0.5}, {**UNCALIBRATED, "name": "other", "embedder": "new"},
              embedders={**EMBEDDERS, "new": EMBEDDERS["minilm"]})
        assert await reload() == 400
        assert (await operating())["faq"]["threshold"] == 0.7  # what still serves

        write({**FAQ, "mode": "off"})
        assert await reload() == 200
        assert await operating() == {}


async def test_a_reload_naming_an_embedder_that_is_not_running_is_refused(
        start_proxy, local_models, clock, fake, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even with a threshold (no calibration to read): refused at the reload, not failing every request after."""
    monkeypatch.setenv("THRIFTGATE_MASTER_KEY", MASTER)
    path = tmp_path / "thriftgate.yaml"
    config = {**base_config(fake.base_url, tmp_path), "embedders": EMBEDDERS}
    path.write_text(yaml.safe_dump({**config, "policies": [FAQ]}))
    proxy = await start_proxy(config_path=path, clock=clock, local_models=local_models)
    path.write_text(yaml.safe_dump({**config, "embedders": {**EMBEDDERS, "new": EMBEDDERS["minilm"]},
                                    "policies": [{**FAQ, "embedder": "new"}]}))
    async with aiohttp.ClientSession(headers=ADMIN) as session:
        async with session.post(proxy.url + "/admin/reload") as response:
            assert response.status == 400
            assert "the embedder 'new' is not running" in (await response.json())["error"]["message"]
    async with sdk(proxy) as client:
        assert (await chat(client, proxy, DARK_MODE)).headers["x-thriftgate-lookup"] == "miss"  # faq still serves
