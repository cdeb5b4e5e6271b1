"""Named thriftgate configurations for bench/proxy_overhead.py, so that anyone can rerun issue 13's table:

  none         no config: counting, pricing, metrics, the SQLite ledger
  policies     + concise, cap and route policies
  keys-memory  + a required virtual key and a team budget, in the in-process store
  keys-redis   the same budget on Redis (a redis-server of the run's own, on the load generator's core:
               as on another host, its CPU is not the proxy's)
  production   policies + keys + the Redis budget + the PostgreSQL ledger (127.0.0.1:5432, a database of its
               own, dropped after)

A target is `thriftgate:PROFILE`, or `thriftgate:PROFILE@wN` for `serve --workers N`.
"""

import asyncio
import hashlib
import statistics
import uuid

PROFILES = ("none", "policies", "keys-memory", "keys-redis", "production")
BENCH_KEY = "tg-bench0000000000000000000000000000"  # the load generator's thriftgate key (keys profiles)
UPSTREAM_KEY_ENV = "BENCH_UPSTREAM_KEY"
DSN_ENV = "BENCH_LEDGER_DSN"
POSTGRES = "postgresql://postgres@127.0.0.1:5432"
RUN = uuid.uuid4().hex[:10]
POLICIES = [
    {"name": "be-brief", "type": "concise", "instruction": "Answer concisely."},
    {"type": "cap", "max_tokens": 1024, "n": 5},
    {"name": "small-for-summaries", "type": "route", "match": {"models": ["gpt-4o"], "last_message_regex": "(?i)tl;dr"},
     "to": "gpt-4o-mini"},
]


def parse_target(name: str) -> tuple[str, int]:
    """`thriftgate:keys-redis@w2` -> ("keys-redis", 2)."""
    profile, _, workers = name.removeprefix("thriftgate:").partition("@w")
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; use one of {', '.join(PROFILES)}")
    return profile, int(workers or 1)


def config(profile: str, *, port: int, upstream: str, work, redis_url: str | None) -> tuple[dict, dict[str, str]]:
    """The config of a profile and the environment it needs."""
    from bench.loadgen import FAKE_KEY

    env = {UPSTREAM_KEY_ENV: FAKE_KEY}
    out: dict = {
        "server": {"host": "127.0.0.1", "port": port, "access_log": False},
        "upstreams": [{"name": "fake", "base_url": upstream + "/v1", "api_key_env": None}],
        "ledger": {"path": str(work / f"{profile}-ledger.db")},
    }
    if profile != "none":
        out["policies"] = POLICIES
    if profile.startswith("keys") or profile == "production":
        out["upstreams"][0]["api_key_env"] = UPSTREAM_KEY_ENV
        out["auth"] = {"required": True, "keys": [
            {"id": "bench", "team": "bench", "sha256": hashlib.sha256(BENCH_KEY.encode()).hexdigest()}]}
        out["budgets"] = [{"scope": "team:bench", "usd": 1_000_000, "window": "day"}]
    if profile in ("keys-redis", "production"):
        out["store"] = {"backend": "redis", "redis_url": redis_url, "key_prefix": f"thriftgate-bench:{RUN}:"}
    if profile == "production":
        out["ledger"] = {"backend": "postgres", "dsn_env": DSN_ENV, "spool_path": str(work / "ledger-spool")}
        env[DSN_ENV] = f"{POSTGRES}/thriftgate_bench_{RUN}"
    return out, env


def key_for(profile: str) -> str | None:
    return BENCH_KEY if profile.startswith("keys") or profile == "production" else None


def uses_redis(profiles: set[str]) -> bool:
    return bool(profiles & {"keys-redis", "production"})


def prepare(profiles: set[str]) -> None:
    if "production" in profiles:
        asyncio.run(_postgres(f'CREATE DATABASE "thriftgate_bench_{RUN}"'))


def clean_up(profiles: set[str]) -> None:
    """Drops the database the run made in the shared PostgreSQL (its Redis stops with it)."""
    if "production" in profiles:
        asyncio.run(_postgres(f'DROP DATABASE IF EXISTS "thriftgate_bench_{RUN}" WITH (FORCE)'))


async def _postgres(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(f"{POSTGRES}/postgres")
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def round_by_round(runs: dict) -> list[tuple[str, bool | None]]:
    """Issue 13's ratios at c=32 taken within each round, then their median over the rounds.

    A round runs the floor and every profile one after the other, a minute or two in all; the machine's speed
    drifts over longer spells (the floor's req/s moved 2,765-4,555 within one run), so a ratio of two runs of
    the same round moves less than a ratio of two cells' medians, each from whichever round it came."""

    def ratios(name: str, base: str, field: str) -> list[float]:
        top, bottom = runs.get((name, 32, False), []), runs.get((base, 32, False), [])
        return [getattr(a, field) / getattr(b, field) for a, b in zip(top, bottom)]

    lines = []
    for text, values, limit, at_most in (
            ("keys-redis CPU/request vs none", ratios("thriftgate:keys-redis", "thriftgate:none", "cpu_ms"), 1.5, True),
            ("keys-redis req/s vs the floor", ratios("thriftgate:keys-redis", "floor", "rps"), 0.6, False),
            ("production CPU/request vs the floor", ratios("thriftgate:production", "floor", "cpu_ms"), 2.5, True)):
        if len(values) < 2:
            continue
        middle = statistics.median(values)
        met = middle <= limit if at_most else middle >= limit
        lines.append((f"{text}, round by round: median {middle:.2f} (target {'<=' if at_most else '>='} {limit}); "
                      + " / ".join(f"{v:.2f}" for v in values), met))
    return lines


def summary(results: dict, targets: list[str], scenarios) -> list[tuple[str, bool | None]]:
    """Each profile beside the floor and beside `none`, measured in the same run; issue 13's targets."""
    lines = []
    for connections, stream in scenarios:
        floor = results.get(("floor", connections, stream))
        none = results.get(("thriftgate:none", connections, stream))
        for name in targets:
            if not name.startswith("thriftgate:"):
                continue
            r = results[name, connections, stream]
            parts = [f"{name} c={connections}: {r.cpu_ms:.3f} CPU ms/req, {r.rps:.0f} req/s"]
            if floor:
                parts.append(f"{r.cpu_ms / floor.cpu_ms:.2f}x the floor's CPU, {r.rps / floor.rps:.2f} of its req/s")
            if none and name != "thriftgate:none":
                parts.append(f"{r.cpu_ms / none.cpu_ms:.2f}x the CPU of no config")
            met = None
            if connections == 32 and name == "thriftgate:keys-redis" and floor and none:
                met = r.cpu_ms <= 1.5 * none.cpu_ms and r.rps >= 0.6 * floor.rps
                parts.append("target <= 1.5x no config and >= 0.6 of floor req/s")
            if connections == 32 and name == "thriftgate:production" and floor:
                met = r.cpu_ms <= 2.5 * floor.cpu_ms
                parts.append("target <= 2.5x floor CPU")
            lines.append(("; ".join(parts), met))
    connections, stream = scenarios[0]
    for profile in PROFILES:  # each profile's worker counts against its own single worker
        one = results.get((f"thriftgate:{profile}@w1", connections, stream))
        for name in targets:
            if one and name.startswith(f"thriftgate:{profile}@w") and name != f"thriftgate:{profile}@w1":
                r = results[name, connections, stream]
                lines.append((f"{profile}: --workers {parse_target(name)[1]} vs 1 at c={connections}: "
                              f"{r.rps / one.rps:.2f}x req/s (the machine's CPU busy: {one.machine * 100:.0f}% "
                              f"with 1, {r.machine * 100:.0f}% with {parse_target(name)[1]}; 100 = one core)", None))
    return lines
