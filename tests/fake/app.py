"""The fake provider as an aiohttp application."""

from collections.abc import Iterable

from aiohttp import web

from tests.fake import batches, endpoints, wire
from tests.fake.call import STATE, UpstreamState
from tests.fake.gate import endpoint, invalid_url_errors, record_requests

FAKE_API_KEY = "sk-fake-upstream-key"
MODELS = frozenset(
    {
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-5",
        "o3-mini",
        "gpt-3.5-turbo",
        "gpt-3.5-turbo-instruct",
        "gpt-4",
        "text-embedding-3-small",
        "text-embedding-3-large",
        "text-embedding-ada-002",
        "llama-3.1-70b",
        "claude-sonnet-4-5",
        "ft:gpt-4o-mini-2024-07-18:acme::abc123",
        *wire.SNAPSHOTS.values(),
    }
)


def make_fake_app(
    *, seed: int = 0, models: Iterable[str] = (), api_keys: Iterable[str] = (FAKE_API_KEY,), record: bool = True
) -> web.Application:
    """The fake provider. `models` adds to the known models (any fake-* name is known too); `record` keeps every
    request in app[STATE].recorded (the standalone server turns it off so that long benchmarks don't grow)."""
    app = web.Application(middlewares=[record_requests, invalid_url_errors])
    app[STATE] = UpstreamState(
        seed=seed, models=MODELS | set(models), api_keys=frozenset(api_keys), recorded=[] if record else None
    )
    app.router.add_post("/v1/chat/completions", endpoint(endpoints.chat_completions, "messages"))
    app.router.add_post("/v1/completions", endpoint(endpoints.completions, "prompt"))
    app.router.add_post("/v1/embeddings", endpoint(endpoints.embeddings, "input"))
    app.router.add_post("/v1/responses", endpoint(endpoints.responses))
    app.router.add_get("/v1/models", endpoint(endpoints.list_models, reads_body=False))
    app.router.add_get("/v1/models/{model:.+}", endpoint(endpoints.retrieve_model, reads_body=False))
    batches.add_routes(app)
    return app
