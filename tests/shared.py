"""What tests in several folders share: the shared Redis, a clock that tests move, Redis clean-up, the Redis
store's fleet-wide day counter."""

import time

import redis.asyncio as redis

REDIS_URL = "redis://127.0.0.1:6379/0"
# 2025-03-31 23:59:00 UTC: a minute before a day's and a month's end.
END_OF_MARCH = 1743465540.0


class FakeClock:
    def __init__(self, now: float = END_OF_MARCH) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def delete_prefix(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def todays_global_usd(url: str, prefix: str) -> dict[str, str]:
    """The global usd budget's counter for today (UTC) as the Redis store keeps it for the fleet: used, leased."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return await client.hgetall(f"{prefix}c:usd:day:{time.strftime('%Y%m%d', time.gmtime())}:global")
    finally:
        await client.aclose()
