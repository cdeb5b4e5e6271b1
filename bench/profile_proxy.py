"""Where a bench target's CPU goes: py-spy on the proxy while bench.proxy_overhead's load runs through it.

    python -m bench.profile_proxy TARGET [--connections 32] [--stream] [--seconds 20] [--gil | --native]
        [--out FILE] [--grep astuple,getpid,...]

TARGET is any of bench.proxy_overhead's (thriftgate, thriftgate-routed, thriftgate:keys-redis, ...). The
processes are started and pinned as the benchmark pins them (the proxy alone on CPU 1; the upstream, the
load generator and py-spy on CPU 0); after 4 s of warm-up py-spy samples the proxy at 250 Hz without
stopping it (`--gil`: only the thread holding the GIL; `--native`: C frames too, at 100 Hz, pausing the
process at each sample, which slows it; idle threads' waits are sampled too). Prints the shares of the samples by library, by line and by
thriftgate function (inclusive), and of the stacks naming each --grep word anywhere; FILE keeps the raw stacks (py-spy's `--format raw`).
Needs py-spy on PATH (`pip install py-spy`); not a dependency of thriftgate.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench import profiles
from bench import proxy_overhead as bench

FRAME = re.compile(r"^(.*) \((.*?)(?::(\d+))?\)$")
LIBRARIES = ("aiohttp", "uvloop", "asyncio", "prometheus_client", "orjson", "redis", "asyncpg", "tiktoken",
             "sqlite3", "multidict", "yarl", "dataclasses", "copy.py", "libc.so", "libpython")


def record(args: argparse.Namespace, out: Path) -> bench.Result:
    procs_args = argparse.Namespace(litellm_python=args.litellm_python, portkey_dir=args.portkey_dir, redis_url=None)
    profile = profiles.parse_target(args.target)[0] if args.target.startswith("thriftgate:") else None
    if profile:
        profiles.prepare({profile})
    with tempfile.TemporaryDirectory(prefix="thriftgate-profile-") as work:
        procs = bench.Processes(Path(work))
        try:
            _, upstream_port = bench.start_upstream(procs)
            if profile and profiles.uses_redis({profile}):
                procs_args.redis_url = bench.start_redis(procs)
            target = bench.start_target(args.target, procs, upstream_port, procs_args)
            bench.measure(procs, target, args.connections, args.stream, 3, 1)  # warm-up, not sampled
            cmd = ["py-spy", "record", "--pid", str(target.proc.pid), "--duration", str(int(args.seconds - 2)),
                   "--format", "raw", "-o", str(out)]
            cmd += ["--rate", "100", "--native"] if args.native else ["--rate", "250", "--nonblocking"]
            cmd += ["--gil"] if args.gil else []
            spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if bench.LOAD_CPUS:
                os.sched_setaffinity(spy.pid, bench.LOAD_CPUS)
            result = bench.measure(procs, target, args.connections, args.stream, args.seconds, 1)
            if spy.wait():
                raise RuntimeError(f"py-spy failed: {spy.stderr.read().decode()[-2000:]}")
            return result
        finally:
            procs.stop_all()
            if profile:
                profiles.clean_up({profile})


def library(file: str) -> str:
    if file.startswith("proxy/") or "/proxy/" in file:
        return "thriftgate (proxy/)"
    return next((name for name in LIBRARIES if name in file), file.rsplit("/", 1)[-1] or "?")


def shares(raw: Path, top: int, words: list[str]) -> None:
    by_library, by_line, inclusive, grepped, total = Counter(), Counter(), Counter(), Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [FRAME.match(f) for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames or not frames[-1]:
            continue
        total += int(count)
        name, file, number = frames[-1].groups()
        by_library[library(file)] += int(count)
        by_line[f"{name} ({file}:{number})"] += int(count)
        for function in {f"{m.group(1)} ({m.group(2)})" for m in frames if m and "proxy/" in m.group(2)}:
            inclusive[function] += int(count)
        for word in words:
            grepped[word] += int(count) if word in stack else 0
    print(f"{total} samples")
    for title, counts in (("by library (the sampled frame's)", by_library), ("by line (self)", by_line),
                          ("thriftgate's functions (inclusive)", inclusive), ("stacks naming", grepped)):
        print(f"\n-- {title}")
        for key, count in counts.most_common(top):
            print(f"{count / total:6.1%}  {key}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_proxy", description=__doc__.split("\n")[0])
    parser.add_argument("target")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--seconds", type=float, default=20.0, help="sampled time (default 20)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--gil", action="store_true", help="only the thread holding the GIL")
    mode.add_argument("--native", action="store_true", help="C frames too (pauses the process per sample)")
    parser.add_argument("--out", type=Path, help="keep the raw stacks here")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--grep", default="", help="comma-separated: the share of stacks naming each")
    parser.add_argument("--litellm-python", type=Path, default=Path("/tmp/litellm-venv/bin/python"))
    parser.add_argument("--portkey-dir", type=Path, default=Path("/tmp/portkey-gateway"))
    args = parser.parse_args()
    if not shutil.which("py-spy"):
        sys.exit("py-spy not found: pip install py-spy")
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "stacks.txt"
        r = record(args, out)
        print(f"# {args.target} c={args.connections} {'stream' if args.stream else 'whole'}, while sampled: "
              f"{r.rps:.0f} req/s, {r.cpu_ms:.3f} CPU ms/req, core {r.busy * 100:.0f}%")
        shares(out, args.top, [word for word in args.grep.split(",") if word])


if __name__ == "__main__":
    main()
