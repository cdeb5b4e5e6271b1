"""Client CPU per Redis call with redis-py's pure-Python reply parser and with hiredis, side by side.

    python -m bench.redis_parser [--calls 3000]

Against the Redis on 127.0.0.1:6379 (one key of its own, deleted after): HGETALL of a 50-field hash
(the fleet totals' shape) and PING, alternately, each parser twice.
"""

import argparse
import asyncio
import time
import uuid

from redis._parsers import _AsyncHiredisParser, _AsyncRESP2Parser
from redis.asyncio import ConnectionPool, Redis


async def cpu_ms_per_call(parser, calls: int) -> float:
    client = Redis(connection_pool=ConnectionPool(parser_class=parser, decode_responses=True))
    key = f"thriftgate-bench:{uuid.uuid4().hex}"
    try:
        await client.hset(key, mapping={f"cost_nanos|model|m{i}": i for i in range(50)})
        started = time.process_time()
        for _ in range(calls):
            await client.hgetall(key)
            await client.ping()
        return (time.process_time() - started) * 1000 / (2 * calls)
    finally:
        await client.delete(key)
        await client.aclose()


async def main(calls: int) -> None:
    for parser in (_AsyncRESP2Parser, _AsyncHiredisParser) * 2:
        print(f"{parser.__name__:22} {await cpu_ms_per_call(parser, calls):.3f} ms CPU per call")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    asyncio.run(main(parser.parse_args().calls))
