"""Which deployments serve a model, and which models a request may fall back to: worked out once per model name.

The first upstream with a glob matching the model decides which glob serves it; every upstream that lists
that same glob is a deployment of it, in config order. So two upstreams listing `gpt-4o*` share the
gpt-4o models, while a catch-all `*` further down serves only what nothing above lists (as before
deployments existed: a config with one upstream per model routes exactly as it did).
"""

import fnmatch
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

from proxy.upstream_config import MODEL_NAMES_REMEMBERED, UpstreamConfig
from proxy.routing.config import Fallback
from proxy.upstream_types import Upstream

@dataclass(frozen=True, slots=True)
class Route:
    model: str
    deployments: tuple[Upstream, ...]
    # The models this one may fall back to, in the order tried, each with the failures that may lead to it.
    fallbacks: tuple[tuple[str, frozenset[str]], ...]
    single: Upstream | None  # the only deployment, when it has no rpm or tpm of its own: chosen without a look


class Deployments:
    def __init__(self, upstreams: tuple[UpstreamConfig, ...], by_name: Mapping[str, Upstream],
                 fallbacks: tuple[Fallback, ...]) -> None:
        self._globs = [(u, [(p, re.compile(fnmatch.translate(p))) for p in u.models]) for u in upstreams]
        self._upstreams = upstreams
        self._by_name = by_name
        self._fallbacks = {entry.from_: entry for entry in fallbacks}
        self.route = functools.lru_cache(maxsize=MODEL_NAMES_REMEMBERED)(self._route)

    def _route(self, model: str) -> Route | None:
        glob = next((p for _, patterns in self._globs for p, compiled in patterns if compiled.match(model)), None)
        if glob is None:
            return None
        serving = tuple(self._by_name[u.name] for u in self._upstreams if glob in u.models)
        only = serving[0] if len(serving) == 1 and serving[0].rpm is None and serving[0].tpm is None else None
        return Route(model, serving, self._chain(model), only)

    def _chain(self, model: str) -> tuple[tuple[str, frozenset[str]], ...]:
        """Depth first: each fallback, then its own fallbacks, each model once (config load refused loops)."""
        chain: list[tuple[str, frozenset[str]]] = []
        seen = {model}

        def follow(source: str) -> None:
            entry = self._fallbacks.get(source)
            if entry is None:
                return
            for target in entry.to:
                if target not in seen:
                    seen.add(target)
                    chain.append((target, frozenset(entry.on)))
                    follow(target)

        follow(model)
        return tuple(chain)
