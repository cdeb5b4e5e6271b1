"""Admin API of lookups (guarded like every /admin route):

DELETE /admin/lookup?scope=team:support         every stored entry of that scope (caches and answers)
GET    /admin/lookup/operating                  per semantic policy: its threshold, where it came from, the
                                                precision and hit rate expected there, its checks and verifier
POST   /admin/lookup/answers?scope=&embedder=[&ttl=]
                                                a JSON list of {"question", "answer"}: embedded and stored for
                                                the `answers` policies (what `thriftgate lookup load` sends)
"""

import asyncio
import re

import orjson
from aiohttp import web

from proxy.config import ConfigError
from proxy.control.config import NAME_PATTERN
from proxy.errors import BadRequest, ServiceUnavailable
from proxy.lookup import canonical
from proxy.lookup.config import seconds
from proxy.lookup.embedders import EmbedderFailed
from proxy.lookup.entries import ANSWERS_OWNER, Entry, LookupUnavailable
from proxy.lookup.service import LOOKUPS
from proxy.policies.answers import partition as answers_partition
from proxy.routes import GuardedRouter

MAX_ANSWERS = 1_000_000  # loaded answers kept per store, over every scope
_SCOPE = re.compile(rf"global|(team|key):(-|{NAME_PATTERN.strip('^$')})")


def add_routes(router: GuardedRouter) -> None:
    router.add_delete("/admin/lookup", delete_scope)
    router.add_get("/admin/lookup/operating", operating)
    router.add_post("/admin/lookup/answers", load_answers)


async def delete_scope(request: web.Request) -> web.Response:
    scope = _scope(request)
    try:
        deleted = await request.app[LOOKUPS].entries.delete_scope(scope)
    except LookupUnavailable as exc:
        raise ServiceUnavailable(f"The lookup store is unreachable: {exc}.") from None
    return web.json_response({"scope": scope, "deleted": deleted})


async def operating(request: web.Request) -> web.Response:
    return web.json_response(request.app[LOOKUPS].operating)


async def load_answers(request: web.Request) -> web.Response:
    lookups = request.app[LOOKUPS]
    scope = _scope(request)
    name = request.query.get("embedder", "")
    try:
        embedder = lookups.embedder(name)
    except ConfigError:
        raise BadRequest(f"No embedder named '{name}' is running.", param="embedder") from None
    ttl = _ttl(request.query.get("ttl"))
    pairs = _pairs(await request.read())
    try:
        embedded = await asyncio.gather(*(embedder.embed(question) for question, _ in pairs))
    except EmbedderFailed as exc:
        raise ServiceUnavailable(f"The embedder '{name}' failed: {exc}") from None
    now = lookups.clock()
    part = answers_partition(scope, name)
    try:
        for (question, answer), embedding in zip(pairs, embedded):
            entry = Entry(
                id=canonical.digest(part, question), kind="answer", owner=ANSWERS_OWNER, scope=scope, partition=part,
                question=question, vector=embedding.vector, model="", completion_tokens=None, created=now,
                choices=[{"message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                expires=None if ttl is None else now + ttl,
            )
            await lookups.entries.put(entry, MAX_ANSWERS, now)
    except LookupUnavailable as exc:
        raise ServiceUnavailable(f"The lookup store is unreachable: {exc}.") from None
    return web.json_response({"scope": scope, "embedder": name, "loaded": len(pairs),
                              "embedding_tokens": sum(e.tokens for e in embedded),
                              "embedding_cost_nanos": sum(e.cost_nanos for e in embedded)})


def _scope(request: web.Request) -> str:
    scope = request.query.get("scope", "")
    if not _SCOPE.fullmatch(scope):
        raise BadRequest(f"scope: expected global, team:NAME, key:ID (or team:- for no team), got {scope!r}",
                         param="scope")
    return scope


def _ttl(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return float(seconds(text))
    except ValueError as exc:
        raise BadRequest(f"ttl: {exc}", param="ttl") from None


def _pairs(raw: bytes) -> list[tuple[str, str]]:
    try:
        items = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"Expected a JSON list of {{question, answer}} objects: {exc}") from None
    if not isinstance(items, list):
        raise BadRequest("Expected a JSON list of {question, answer} objects.")
    pairs = []
    for index, item in enumerate(items):
        question = item.get("question") if isinstance(item, dict) else None
        answer = item.get("answer") if isinstance(item, dict) else None
        if not (isinstance(question, str) and question.strip() and isinstance(answer, str) and answer.strip()):
            raise BadRequest(f"[{index}]: expected {{\"question\": text, \"answer\": text}}, got {item!r}"[:300])
        pairs.append((question, answer))
    return pairs
