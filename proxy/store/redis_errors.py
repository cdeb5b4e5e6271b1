"""What a Redis call fails with when Redis is out of reach or refuses it, for every store kept in Redis (budgets,
lookup entries, deployment health): out of reach (connection refused or lost, a timeout), or answering with an
error (full: maxmemory reached under noeviction, "OOM command not allowed"; a read-only replica; a script it
refuses). Either way the store cannot rely on Redis until a call goes through: it is down, never a 500."""

import asyncio

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError, ResponseError)


def why_down(exc: BaseException) -> str:
    """How a log line says which: "refuses writes (OutOfMemoryError: ...)" or "is unreachable (ConnectionError)"."""
    if isinstance(exc, ResponseError):
        return f"refuses writes ({type(exc).__name__}: {exc})"
    return f"is unreachable ({type(exc).__name__})"
