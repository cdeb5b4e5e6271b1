"""Every core: `thriftgate serve --workers N` against one worker, with an upstream and a load generator that
leave the cores to the proxy.

    python -m bench.cores [--profile none,keys-redis,production] [--workers 2] [--seconds 8] [--rounds 3]

bench.proxy_overhead's `--workers` runs its Python fake upstream and load generator on the same two cores as
the workers: together they cost about as much per request as one hop of the proxy, so on a 2-core machine a
second worker has little left to use. Here the upstream is nginx answering every POST with one chat completion
(usage included, so every request is priced) and the load is wrk, 64 connections: both cost ~0.03 ms per
request, against ~0.3-0.6 ms for the proxy. Nothing is pinned. Per profile and worker count, rounds
interleaved: req/s, the proxy's CPU ms per request (every worker's, utime+stime), and how many cores it kept
busy; then each round's N-worker req/s over the same round's one-worker req/s, and their median.
Needs nginx and wrk on PATH (Debian: `apt-get install nginx-light wrk`); not dependencies of thriftgate.
"""

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import profiles
from bench import proxy_overhead as bench
from bench.loadgen import FAKE_KEY

ANSWER = {
    "id": "chatcmpl-cores", "object": "chat.completion", "created": 1796614268, "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "to of water their place was it other",
                                         "refusal": None}, "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 25, "completion_tokens": 8, "total_tokens": 33,
              "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}},
}
QUESTION = {"model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Tell me about proxies and what they cost."}]}


def start_nginx(procs: bench.Processes, work: Path) -> int:
    port = bench.free_port()
    (work / "nginx.conf").write_text(f"""
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {work}/nginx-body;
  keepalive_requests 100000000;
  server {{
    listen 127.0.0.1:{port};
    location / {{ default_type application/json; return 200 '{json.dumps(ANSWER)}'; }}
  }}
}}
""")
    proc = procs.start("nginx", ["nginx", "-c", str(work / "nginx.conf"), "-p", str(work)], None)
    bench.wait_listening(proc, port, work / "nginx.log")
    return port


def wrk(port: int, seconds: float, key: str, script: Path) -> tuple[float, int]:
    """(req/s, answers that were not 2xx)."""
    script.write_text(f"""wrk.method = "POST"
wrk.body = '{json.dumps(QUESTION)}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
""")
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    command = ["wrk", "-t1", "-c64", f"-d{seconds:g}s", "-s", str(script), url]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), int(failed.group(1)) if failed else 0


def measure(procs: bench.Processes, work: Path, profile: str, workers: int, upstream: int, redis_url: str | None,
            seconds: float) -> tuple[float, float, float]:
    """(req/s, CPU ms per request, cores busy) of one proxy started for this run."""
    port = bench.free_port()
    run = work / f"{profile}-w{workers}-{time.monotonic_ns()}"
    run.mkdir()
    settings, env = profiles.config(profile, port=port, upstream=f"http://127.0.0.1:{upstream}", work=run,
                                    redis_url=redis_url)
    (run / "config.yaml").write_text(json.dumps(settings))
    proc = procs.start(f"thriftgate-{profile}-w{workers}", [sys.executable, "-m", "proxy", "serve", "--config",
                       str(run / "config.yaml"), "--workers", str(workers)], None, env=env)
    try:
        bench.wait_listening(proc, port, procs.workdir / f"thriftgate-{profile}-w{workers}.log", sockets=workers)
        key = profiles.key_for(profile) or FAKE_KEY
        wrk(port, 2, key, run / "warmup.lua")
        cpu, started = bench.cpu_seconds(proc.pid), time.perf_counter()
        rps, failed = wrk(port, seconds, key, run / "load.lua")
        cpu, wall = bench.cpu_seconds(proc.pid) - cpu, time.perf_counter() - started
        if failed:
            raise RuntimeError(f"{profile} with {workers} workers answered {failed} requests with an error")
        return rps, cpu / (rps * wall) * 1000, cpu / wall
    finally:
        procs.stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cores", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="none,keys-redis,production")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    missing = [tool for tool in ("nginx", "wrk") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"bench.cores needs {' and '.join(missing)} on PATH (Debian: apt-get install nginx-light wrk)")
    chosen = args.profile.split(",")
    profiles.prepare(set(chosen))
    with tempfile.TemporaryDirectory(prefix="thriftgate-cores-") as tmp:
        procs = bench.Processes(Path(tmp))
        try:
            upstream = start_nginx(procs, Path(tmp))
            redis_url = bench.start_redis(procs) if profiles.uses_redis(set(chosen)) else None
            for profile in chosen:
                ratios = []
                for round_ in range(1, args.rounds + 1):
                    one, many = (measure(procs, Path(tmp), profile, n, upstream, redis_url, args.seconds)
                                 for n in (1, args.workers))
                    ratios.append(many[0] / one[0])
                    print(f"{profile:11s} round {round_}: 1 worker {one[0]:6.0f} req/s {one[1]:.3f} CPU ms/req "
                          f"{one[2]:.2f} cores | {args.workers} workers {many[0]:6.0f} req/s {many[1]:.3f} CPU ms/req "
                          f"{many[2]:.2f} cores | {ratios[-1]:.2f}x", flush=True)
                print(f"{profile:11s} {args.workers} workers / 1: median {statistics.median(ratios):.2f}x "
                      f"({', '.join(f'{r:.2f}' for r in ratios)})", flush=True)
        finally:
            procs.stop_all()
            profiles.clean_up(set(chosen))


if __name__ == "__main__":
    main()
