"""Hand-built exchanges and policies for unit tests of policy types and the chain."""

from functools import lru_cache
from typing import Any

import orjson
from aiohttp.test_utils import make_mocked_request
from prometheus_client import CollectorRegistry

from proxy.policies import registry
from proxy.config_loading import validate
from proxy.exchange import Exchange
from proxy.stages.count import prompt_counter
from proxy.stages.hooks import PolicyChain, build_chain
from proxy.accounting.metrics import Metrics
from proxy.dialects.ingress import INGRESS
from proxy.policies.base import Services
from proxy.accounting.pricing import PriceTable, default_pricing_path
from proxy.accounting.savings import HoldoutStats
from proxy.accounting.tokens import TokenCounter

PRICES = PriceTable.load([default_pricing_path()], {})
TOKENS = TokenCounter()
SERVICES = Services(prices=PRICES, tokens=TOKENS, side_calls=None)  # cascade is tested end to end
PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions", "responses": "/v1/responses",
         "embeddings": "/v1/embeddings", "messages": "/v1/messages", "count_tokens": "/v1/messages/count_tokens"}


@lru_cache(maxsize=64)
def _request(endpoint: str, headers: tuple[tuple[str, str], ...]):
    # Mocked requests are slow to build and never change: one per endpoint and headers.
    return make_mocked_request("POST", PATHS[endpoint], headers=dict(headers))


def exchange(endpoint: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Exchange:
    dialect = INGRESS[PATHS[endpoint]]
    ex = Exchange(_request(endpoint, tuple(sorted((headers or {}).items()))), endpoint, dialect)
    ex.raw_body = orjson.dumps(body)
    ex.body = orjson.loads(ex.raw_body)
    facts = dialect.facts(ex.body)
    ex.requested_model = ex.model = facts.model
    ex.stream, ex.max_output_tokens = facts.stream, facts.max_output_tokens
    ex.count_prompt = prompt_counter(TOKENS)
    return ex


def chain(*entries: dict[str, Any]) -> tuple[PolicyChain, Metrics]:
    config = validate({"policies": list(entries)})
    metrics = Metrics(CollectorRegistry(), models=PRICES.models)
    return build_chain(config.policies, SERVICES, metrics, HoldoutStats()), metrics


def policy(entry: dict[str, Any]):
    """One policy object of the entry's type, built as the app builds it."""
    config = validate({"policies": [entry]}).policies[0]
    return registry.REGISTRY[config.type].Policy(config, SERVICES)
