"""Deployment health in Redis, shared by every replica: the rules of store/health.py, each one Lua script.

Keys, under the configured prefix P: `P health:<deployment>`, a hash u (until), p (probe 0/1), f (failures
in a row), s (since), c (probe claimed until); deleted when the deployment is plainly healthy again, and
expiring on their own once nothing is left to remember. Its own small connection pool: a health write
must not wait behind budget traffic, and there is at most one per failure (successes are not written
unless they end a run of failures or a probe).
"""

from redis.asyncio import BlockingConnectionPool, Redis

from proxy.control.config import StoreConfig, masked_url
from proxy.store import StoreUnavailable
from proxy.store.health import CooldownRule, DeploymentHealth
from proxy.store.redis_errors import REDIS_DOWN

POOL_SIZE = 4

# Reads the state into locals; `keep` writes it back (or deletes it when healthy) and returns it.
_STATE = """
local v = redis.call('HMGET', KEYS[1], 'u', 'p', 'f', 's', 'c')
local u, p, f, s, c = tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0, tonumber(v[4]) or 0, tonumber(v[5]) or 0
local now = tonumber(ARGV[1])
local function keep(u, p, f, s, c, ttl)
  if u == 0 and p == 0 and f == 0 and c == 0 then
    redis.call('DEL', KEYS[1])
  else
    redis.call('HSET', KEYS[1], 'u', tostring(u), 'p', p, 'f', f, 's', tostring(s), 'c', tostring(c))
    redis.call('EXPIRE', KEYS[1], math.ceil(math.max(u, c, s) - now + ttl))
  end
  return {tostring(u), p, f, tostring(s), tostring(c)}
end
"""

# ARGV: now, after_failures, within, cool_for, probe (1/0), rest_until.
FAILED = _STATE + """
local after, within, cool, probe, rest = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == '1', tonumber(ARGV[6])
local ttl = within + cool + 60
if probe then return keep(math.max(now + cool, rest), 1, 0, 0, 0, ttl) end
if u > now or p == 1 then return keep(math.max(u, rest), p, f, s, c, ttl) end
local run = 1
if f > 0 and now - s <= within then run = f + 1 else s = now end
if run >= after then return keep(math.max(now + cool, rest), 1, 0, 0, 0, ttl) end
if rest <= now then rest = 0 end
return keep(rest, 0, run, s, 0, ttl)
"""

# ARGV: now, probe (1/0).
SUCCEEDED = _STATE + """
if ARGV[2] == '1' or not (p == 1 or u > now) then return keep(0, 0, 0, 0, 0, 0) end
return {tostring(u), p, f, tostring(s), tostring(c)}
"""

# ARGV: now, lease. Returns 1 when this caller holds the probe.
CLAIM = _STATE + """
if p == 1 and u <= now and c <= now then
  keep(u, p, f, s, now + tonumber(ARGV[2]), 60)
  return 1
end
return 0
"""


class RedisHealthStore:
    backend = "redis"
    shared = True

    def __init__(self, config: StoreConfig) -> None:
        self._config = config
        self._prefix = config.key_prefix + "health:"
        self._message = f"The health store (Redis at {masked_url(config.redis_url)}) is unreachable."
        self._redis: Redis | None = None

    async def start(self) -> None:
        timeout = self._config.timeout_seconds
        pool = BlockingConnectionPool.from_url(
            self._config.redis_url, max_connections=POOL_SIZE, timeout=timeout, decode_responses=True,
            socket_timeout=timeout, socket_connect_timeout=timeout,
        )
        self._redis = Redis.from_pool(pool)
        self._failed = self._redis.register_script(FAILED)
        self._succeeded = self._redis.register_script(SUCCEEDED)
        self._claim = self._redis.register_script(CLAIM)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    async def failed(self, name: str, now: float, rule: CooldownRule, *, probe: bool,
                     rest_until: float) -> DeploymentHealth:
        args = [repr(now), rule.after_failures, repr(rule.within), repr(rule.cool_for), int(probe), repr(rest_until)]
        return _state(await self._call(self._failed, name, args))

    async def succeeded(self, name: str, now: float, *, probe: bool) -> DeploymentHealth:
        return _state(await self._call(self._succeeded, name, [repr(now), int(probe)]))

    async def claim_probe(self, name: str, now: float, lease: float) -> bool:
        return bool(await self._call(self._claim, name, [repr(now), repr(lease)]))

    async def snapshot(self, names: tuple[str, ...]) -> dict[str, DeploymentHealth]:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hmget(self._prefix + name, "u", "p", "f", "s", "c")
                rows = await pipe.execute()
        except REDIS_DOWN:
            raise StoreUnavailable(self._message) from None
        return {name: _state(row) for name, row in zip(names, rows) if row[0] is not None}

    async def _call(self, script, name: str, args: list):
        try:
            return await script(keys=[self._prefix + name], args=args)
        except REDIS_DOWN:
            raise StoreUnavailable(self._message, attempted=True) from None


def _state(values: list) -> DeploymentHealth:
    until, probe, failures, since, claimed = values
    return DeploymentHealth(float(until or 0), bool(int(probe or 0)), int(failures or 0), float(since or 0),
                            float(claimed or 0))
