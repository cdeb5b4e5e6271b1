"""What tests in several folders share: the shared Redis, a clock that tests move, Redis clean-up."""

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
