"""Instructions per request of a thriftgate profile, counted by valgrind's callgrind: a figure that does not
move with the machine's load (CPU time per request does, on a shared machine), for before/after comparisons.

    python -m bench.instructions [--profile none,keys-redis,production] [--requests 400] [--connections 4]
    python -m bench.instructions --profile floor,none,keys-redis,production   # and each as a multiple of the floor

Per profile: the fake upstream as bench.proxy_overhead starts it; `python -m proxy serve` under callgrind with
instrumentation off while it starts and warms up (--warmup requests); then counted over --requests requests
(sent --connections at a time by bench.loadgen's connection, keep-alive, not streamed). Only the proxy process
is counted, all its threads (the ledger's writer included). `floor` counts bench/floor_forwarder.py the same way
(one bare aiohttp hop): with it, every profile is also given as a multiple of the floor, the CPU ratio of issue
13's targets in a figure the machine's load does not move. Needs valgrind on PATH. Slow: about a minute per
profile.
"""

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import profiles
from bench import proxy_overhead as bench
from bench.loadgen import Connection, chat_request

TOTALS = re.compile(rb"^(?:summary|totals): (\d+)", re.MULTILINE)


async def send(port: int, key: str | None, requests: int, connections: int) -> None:
    loop = asyncio.get_running_loop()
    request = chat_request("127.0.0.1", port, "/v1/chat/completions", "gpt-4o-mini", False,
                           **({"key": key} if key else {}))
    left = requests

    async def one_connection() -> None:
        nonlocal left
        _, conn = await loop.create_connection(Connection, "127.0.0.1", port)
        try:
            while left > 0:
                left -= 1
                status, _, _ = await conn.send(request)
                if status != 200:
                    raise RuntimeError(f"the proxy answered {status}")
        finally:
            conn.transport.close()

    await asyncio.gather(*(one_connection() for _ in range(connections)))


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def count(profile: str, args: argparse.Namespace, work: Path) -> int:
    procs = bench.Processes(work)
    try:
        _, upstream_port = bench.start_upstream(procs)
        redis_url = bench.start_redis(procs) if profiles.uses_redis({profile}) else None
        port, upstream = bench.free_port(), f"http://127.0.0.1:{upstream_port}"
        out = work / f"{profile}.callgrind"
        cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", sys.executable]
        env = {}
        if profile == "floor":
            cmd += ["-m", "bench.floor_forwarder", "--port", str(port), "--upstream", upstream]
        else:
            config, env = profiles.config(profile, port=port, upstream=upstream, work=work, redis_url=redis_url)
            path = work / f"{profile}.yaml"
            path.write_text(json.dumps(config))
            cmd += ["-m", "proxy", "serve", "--config", str(path)]
        proc = procs.start(f"thriftgate-{profile}", cmd, None, env=env)
        bench.wait_listening(proc, port, work / f"thriftgate-{profile}.log", timeout=600)
        key = profiles.key_for(profile)
        asyncio.run(send(port, key, args.warmup, args.connections))
        control(proc.pid, "--instr=on")
        asyncio.run(send(port, key, args.requests, args.connections))
        control(proc.pid, "--dump")
        time.sleep(1)
        dumps = sorted(work.glob(f"{profile}.callgrind*"))
        return sum(int(m) for dump in dumps for m in TOTALS.findall(dump.read_bytes())[:1])
    finally:
        procs.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="none,keys-redis,production")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    chosen = args.profile.split(",")
    profiles.prepare(set(chosen))
    floor = None
    try:
        for profile in chosen:
            with tempfile.TemporaryDirectory(prefix="thriftgate-instructions-") as work:
                per_request = count(profile, args, Path(work)) / args.requests
            floor = per_request if profile == "floor" else floor
            name = "floor" if profile == "floor" else f"thriftgate:{profile}"
            print(f"{name:23s} {per_request:12,.0f} instructions/request ({args.requests} requests, "
                  f"{args.connections} connections)" + (f"; {per_request / floor:.2f}x the floor" if floor else ""),
                  flush=True)
    finally:
        profiles.clean_up(set(chosen))


if __name__ == "__main__":
    main()
