"""What thriftgate costs on top of going straight to the upstream, next to a bare aiohttp hop, LiteLLM and Portkey.

    python -m bench.proxy_overhead [--seconds 10] [--targets direct,floor,thriftgate,litellm,portkey] [--memory]
    python -m bench.proxy_overhead --profile none,policies,keys-memory,keys-redis,production [--workers 1,2]

Run from the repository root (it starts `python -m tests.fake_upstream` and `python -m proxy`). Targets:
  direct          the fake upstream itself, no proxy
  floor           bench/floor_forwarder.py: one bare aiohttp hop, the least any aiohttp proxy can cost
  thriftgate      counting, pricing, metrics and ledger on; access log off
  thriftgate-log  the same with the access log on (stdout to a file); not in the default set
  thriftgate-routed  thriftgate with routing configured (two weighted deployments of the model, retries, a
                  fallback) and no faults: what resilience costs when nothing fails
  litellm         LiteLLM's proxy, one worker, from --litellm-python's venv; skipped when that is absent
  portkey         Portkey's gateway (Node.js, `@portkey-ai/gateway` from npm) in --portkey-dir, `--headless`; the
                  load generator names the provider and the fake upstream in Portkey's request headers. Skipped
                  when absent. Installed outside the repository (its lock file pins @hono/node-server 1.13.5;
                  npm's newest 1.19 breaks its streams with "TypeError: immutable", Portkey-AI/gateway#1389):
                    mkdir -p /tmp/portkey-gateway && cd /tmp/portkey-gateway &&
                    echo '{"private": true, "overrides": {"@hono/node-server": "1.13.5"}}' > package.json &&
                    npm install @portkey-ai/gateway@1.15.2
  direct-messages      the fake Anthropic itself (`python -m tests.fake_upstream --anthropic`), Messages API
  thriftgate-messages  thriftgate on POST /v1/messages to an Anthropic upstream (the fake), priced the same way:
                       its overhead over direct-messages is compared with the chat path's over direct
Each target is measured at concurrency 1 and 32, streamed and not, for --seconds after --warmup (--rounds N: N
times, every target once a round, and each cell's median run reported): requests/s,
p50/p99 latency and time to first byte, the proxy process's CPU ms per request (utime+stime from /proc, its
children and threads included) and how busy its core was. `--memory` instead sends 100k requests through
thriftgate and prints its RSS along the way.

CPU layout (2 or more cores): the proxy under test runs alone on CPU 1; the fake upstream and the load
generator share CPU 0. CPU per request is then the proxy's alone, and at concurrency 32 a proxy below 100%
of its core is not the bottleneck (CPU 0 is). Every process started here is stopped on exit, Ctrl-C included.
"""

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import profiles
from bench.loadgen import FAKE_KEY

REPO = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")
SCENARIOS = ((1, False), (1, True), (32, False), (32, True))  # (concurrency, streamed)
DEFAULT_TARGETS = "direct,floor,thriftgate,thriftgate-routed,litellm,portkey,direct-messages,thriftgate-messages"
MESSAGES_SUFFIX = "-messages"  # targets measured on Anthropic's Messages API
PROXY_CPUS, LOAD_CPUS = ({1}, {0}) if (os.cpu_count() or 1) >= 2 else (None, None)
MEMORY_REQUESTS = 100_000
# The load generator's model served by two deployments (both the fake), with retries and a fallback configured.
ROUTED = {
    "upstreams": [
        {"name": "primary", "base_url": "UPSTREAM/v1", "api_key_env": None, "models": ["gpt-4o-mini"], "weight": 3},
        {"name": "secondary", "base_url": "UPSTREAM/v1", "api_key_env": None, "models": ["gpt-4o-mini"]},
        {"name": "fake", "base_url": "UPSTREAM/v1", "api_key_env": None},
    ],
    "routing": {"retries": 2, "fallbacks": [{"from": "gpt-4o-mini", "to": ["gpt-4o"]}]},
}


# ---- processes ----

class Processes:
    """Starts servers in sessions of their own (Ctrl-C reaches only us) and stops every one of them on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._started: list[subprocess.Popen] = []

    def start(self, name: str, cmd: list[str], cpus: set[int] | None, env: dict | None = None,
              stdout: int | str | None = None) -> subprocess.Popen:
        """stderr goes to <workdir>/<name>.log, stdout too unless it is subprocess.PIPE or a file name."""
        with open(self.workdir / f"{name}.log", "wb") as log, \
                open(self.workdir / stdout, "wb") if isinstance(stdout, str) else log as out:
            proc = subprocess.Popen(
                cmd, cwd=REPO, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout == subprocess.PIPE else out, stderr=log, start_new_session=True,
            )
        self._started.append(proc)
        if cpus:
            os.sched_setaffinity(proc.pid, cpus)  # threads and children started later inherit it
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._started.remove(proc)

    def running(self) -> list[subprocess.Popen]:
        return [proc for proc in self._started if proc.poll() is None]

    def stop_all(self) -> None:
        for proc in reversed(self._started[:]):
            self.stop(proc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(proc: subprocess.Popen, port: int, log: Path, timeout: float = 120, sockets: int = 1) -> None:
    """Until `sockets` listening sockets are bound to the port: with `serve --workers N`, connections opened
    before the last worker listens all go to the others, and stay there (keep-alive)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}; last lines of {log}:\n{log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            if sockets == 1 or listening_sockets(port) >= sockets:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"not {sockets} socket(s) listening on {port} after {timeout}s; see {log}")


def listening_sockets(port: int) -> int:
    """Sockets in LISTEN state on the port (one per worker with SO_REUSEPORT), from /proc/net/tcp and tcp6."""
    local = f":{port:04X}"
    return sum(1 for table in ("tcp", "tcp6") for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]
               if (fields := line.split())[1].endswith(local) and fields[3] == "0A")


def cpu_seconds(pid: int) -> float:
    """utime+stime of pid and its live descendants (all threads: /proc/PID/stat sums them)."""
    total, family = 0.0, {pid}
    for stat in sorted(Path("/proc").glob("[0-9]*/stat"), key=lambda p: int(p.parent.name)):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        this, parent = int(stat.parent.name), int(fields[1])
        if this in family or parent in family:
            family.add(this)
            total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def machine_busy_seconds() -> float:
    """CPU time used by everything on the machine (/proc/stat: user, nice, system, irq, softirq, steal)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


# ---- targets ----

@dataclass
class Target:
    name: str
    port: int
    proc: subprocess.Popen | None  # None: the upstream itself, no proxy
    headers: tuple[str, ...] = ()  # sent by the load generator with every request ("Name: value")


def start_upstream(procs: Processes, *, anthropic: bool = False) -> tuple[subprocess.Popen, int]:
    """The fake OpenAI, or the fake Anthropic (taking the same key, so one load generator fits both)."""
    port, name = free_port(), "anthropic-upstream" if anthropic else "upstream"
    cmd = [sys.executable, "-m", "tests.fake_upstream", "--port", str(port)]
    if anthropic:
        cmd += ["--anthropic", "--api-key", FAKE_KEY]
    proc = procs.start(name, cmd, LOAD_CPUS)
    wait_listening(proc, port, procs.workdir / f"{name}.log")
    return proc, port


def start_redis(procs: Processes) -> str:
    """A redis-server of the run's own, on the load generator's core: in a fleet Redis is another host, and the
    shared one on this machine may run on the proxy's core and take its CPU from it in the middle of a run."""
    port = free_port()
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = procs.start("redis", cmd, LOAD_CPUS)
    wait_listening(proc, port, procs.workdir / "redis.log")
    return f"redis://127.0.0.1:{port}/0"


def start_target(name: str, procs: Processes, upstream_port: int, args: argparse.Namespace) -> Target:
    port, work = free_port(), procs.workdir
    upstream = f"http://127.0.0.1:{upstream_port}"
    if name == "thriftgate-messages":
        config = work / f"{name}.yaml"
        config.write_text(json.dumps({
            "server": {"host": "127.0.0.1", "port": port, "access_log": False},
            "upstreams": [{"name": "claude", "base_url": upstream + "/v1", "provider": "anthropic",
                           "api_key_env": "BENCH_ANTHROPIC_KEY", "models": ["claude-*"]}],
            "ledger": {"path": str(work / f"{name}-ledger.db")},
        }))
        proc = procs.start(name, [sys.executable, "-m", "proxy", "serve", "--config", str(config)], PROXY_CPUS,
                           env={"BENCH_ANTHROPIC_KEY": FAKE_KEY})
    elif name.startswith("thriftgate:"):
        profile, workers = profiles.parse_target(name)
        config = work / f"{profile}-w{workers}.yaml"
        settings, env = profiles.config(profile, port=port, upstream=upstream, work=work, redis_url=args.redis_url)
        config.write_text(json.dumps(settings))
        cmd = [sys.executable, "-m", "proxy", "serve", "--config", str(config), "--workers", str(workers)]
        proc = procs.start(name.replace(":", "-"), cmd, PROXY_CPUS if workers == 1 else None, env=env)
        wait_listening(proc, port, work / f"{name.replace(':', '-')}.log", sockets=workers)
        return Target(name, port, proc)
    elif name == "floor":
        cmd = [sys.executable, "-m", "bench.floor_forwarder", "--port", str(port), "--upstream", upstream]
        proc = procs.start(name, cmd, PROXY_CPUS)
    elif name.startswith("thriftgate"):
        config = work / f"{name}.yaml"
        config.write_text(json.dumps({  # JSON is YAML
            "server": {"host": "127.0.0.1", "port": port, "access_log": name == "thriftgate-log"},
            "upstreams": [{"name": "fake", "base_url": upstream + "/v1", "api_key_env": None}],
            "ledger": {"path": str(work / f"{name}-ledger.db")},
            **(ROUTED if name == "thriftgate-routed" else {}),
        }).replace("UPSTREAM", upstream))
        # the access log goes to a file, as a log shipper would read it
        proc = procs.start(name, [sys.executable, "-m", "proxy", "serve", "--config", str(config)], PROXY_CPUS,
                           stdout=f"{name}.access.log")
    elif name == "litellm":
        proc = procs.start(name, litellm_command(args.litellm_python, work, port, upstream), PROXY_CPUS,
                           env={"LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    elif name == "portkey":
        # No config: Portkey's gateway takes the provider and its base URL from each request's headers.
        proc = procs.start(name, ["node", str(portkey_server(args)), f"--port={port}", "--headless"], PROXY_CPUS)
        wait_listening(proc, port, work / f"{name}.log")
        return Target(name, port, proc, ("x-portkey-provider: openai", f"x-portkey-custom-host: {upstream}/v1"))
    else:
        raise ValueError(f"unknown target {name!r}")
    wait_listening(proc, port, work / f"{name}.log")
    return Target(name, port, proc)


def portkey_server(args: argparse.Namespace) -> Path:
    return args.portkey_dir / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"


def litellm_command(python: Path, work: Path, port: int, upstream: str) -> list[str]:
    """One uvicorn worker with openai/gpt-4o-mini on the fake upstream. The master key is the fake's key, which
    the load generator sends anyway; uvicorn's access log is off, as thriftgate's is."""
    config, log_config = work / "litellm.yaml", work / "litellm-logging.json"
    config.write_text(json.dumps({
        "model_list": [{"model_name": "gpt-4o-mini", "litellm_params": {
            "model": "openai/gpt-4o-mini", "api_base": upstream + "/v1", "api_key": "sk-fake-upstream-key"}}],
        "general_settings": {"master_key": "sk-fake-upstream-key"},
    }))
    log_config.write_text(json.dumps({
        "version": 1, "disable_existing_loggers": False, "loggers": {"uvicorn.access": {"level": "WARNING"}},
    }))
    return [str(python.parent / "litellm"), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
            "--num_workers", "1", "--log_config", str(log_config)]


# ---- measuring ----

@dataclass
class Result:
    rps: float
    p50: float  # milliseconds from here on
    p99: float
    ttfb50: float
    ttfb99: float
    cpu_ms: float | None  # per request, the proxy's process; None for direct
    busy: float | None  # the proxy's share of one core
    others: float  # cores' worth of CPU used meanwhile by processes not started here (a noisy machine)
    machine: float  # cores' worth of CPU used meanwhile by everything (2.0: a 2-core machine was full)
    errors: dict


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(int(q * len(sorted_values)), len(sorted_values) - 1)] * 1000


def measure(procs: Processes, target: Target, connections: int, stream: bool, seconds: float,
            warmup: float) -> Result:
    results = procs.workdir / "loadgen.json"
    cmd = [sys.executable, "-m", "bench.loadgen", "--port", str(target.port), "--connections", str(connections),
           "--seconds", str(seconds), "--warmup", str(warmup), "--out", str(results)] + (["--stream"] if stream else [])
    if target.name.endswith(MESSAGES_SUFFIX):
        cmd.append("--messages")
    if target.name.startswith("thriftgate:") and (key := profiles.key_for(profiles.parse_target(target.name)[0])):
        cmd += ["--key", key]
    for header in target.headers:
        cmd += ["--header", header]
    load = procs.start("loadgen", cmd, LOAD_CPUS, stdout=subprocess.PIPE)
    pid = target.proc.pid if target.proc else None
    ours = [p.pid for p in procs.running()]
    lines = iter(load.stdout.readline, b"")
    if next(lines, b"").strip() != b"start":
        raise RuntimeError(f"load generator failed: {(procs.workdir / 'loadgen.log').read_text()[-2000:]}")
    cpu0, t0 = (cpu_seconds(pid) if pid else 0.0), time.perf_counter()
    ours0, all0 = sum(map(cpu_seconds, ours)), machine_busy_seconds()
    next(lines)  # "stop"
    cpu1, t1 = (cpu_seconds(pid) if pid else 0.0), time.perf_counter()
    ours1, all1 = sum(map(cpu_seconds, ours)), machine_busy_seconds()
    if load.wait():
        raise RuntimeError(f"load generator failed: {(procs.workdir / 'loadgen.log').read_text()[-2000:]}")
    load.stdout.close()
    procs.stop(load)
    out = json.loads(results.read_text())
    latencies, ttfbs = sorted(out["latencies"]), sorted(out["ttfbs"])
    if not latencies:
        raise RuntimeError(f"{target.name}: no successful request; errors {out['errors']}")
    return Result(
        rps=len(latencies) / out["seconds"], p50=percentile(latencies, 0.5), p99=percentile(latencies, 0.99),
        ttfb50=percentile(ttfbs, 0.5), ttfb99=percentile(ttfbs, 0.99),
        cpu_ms=(cpu1 - cpu0) * 1000 / len(latencies) if pid else None,
        busy=(cpu1 - cpu0) / (t1 - t0) if pid else None,
        others=max((all1 - all0) - (ours1 - ours0), 0) / (t1 - t0), machine=(all1 - all0) / (t1 - t0),
        errors=out["errors"],
    )


def run_benchmark(args: argparse.Namespace, procs: Processes) -> None:
    targets = [t for t in args.targets.split(",") if t]
    if "litellm" in targets and not args.litellm_python.exists():
        print(f"# litellm skipped: no {args.litellm_python} (python3 -m venv /tmp/litellm-venv && "
              "/tmp/litellm-venv/bin/pip install 'litellm[proxy]==1.106.2'; or pass --litellm-python)")
        targets.remove("litellm")
    if "portkey" in targets and not portkey_server(args).exists():
        print(f"# portkey skipped: no {portkey_server(args)} (mkdir -p /tmp/portkey-gateway && cd /tmp/portkey-gateway"
              """ && echo '{"private": true, "overrides": {"@hono/node-server": "1.13.5"}}' > package.json"""
              " && npm install @portkey-ai/gateway@1.15.2; or pass --portkey-dir)")
        targets.remove("portkey")
    _, upstream_port = start_upstream(procs)
    anthropic_port = start_upstream(procs, anthropic=True)[1] if any(t.endswith(MESSAGES_SUFFIX) for t in targets) else 0
    runs: dict[tuple[str, int, bool], list[Result]] = {}

    def started(name: str) -> Target:
        port = anthropic_port if name.endswith(MESSAGES_SUFFIX) else upstream_port
        return Target(name, port, None) if name.startswith("direct") else start_target(name, procs, port, args)

    # --keep-running: every target started once, then measured in turn round after round, so that the runs a
    # ratio compares are seconds apart rather than a restart and the other targets' runs apart.
    running = {name: started(name) for name in targets} if args.keep_running else {}
    for round_number in range(1, args.rounds + 1):  # rounds interleave: a busy spell of the machine hits one run
        for name in targets:
            target = running.get(name) or started(name)
            for connections, stream in SCENARIOS:
                print(f"# round {round_number}: {name} c={connections} {'stream' if stream else 'whole'} ...",
                      file=sys.stderr, flush=True)
                runs.setdefault((name, connections, stream), []).append(
                    measure(procs, target, connections, stream, args.seconds, args.warmup))
            if target.proc and name not in running:
                procs.stop(target.proc)
    report({cell: median_run(cell_runs) for cell, cell_runs in runs.items()}, targets, args)
    if args.rounds > 1:
        print(f"\n## every round (cpu ms/req, req/s, others %); the tables above take each cell's median run by CPU")
        for (name, connections, stream), cell_runs in runs.items():
            print(f"{name} c={connections}{' stream' if stream else ''}: " + "  ".join(
                f"{'-' if r.cpu_ms is None else f'{r.cpu_ms:.3f}'} {r.rps:.0f} {r.others * 100:.0f}" for r in cell_runs))
        if lines := profiles.round_by_round(runs):
            print("\n## profiles (issue 13), each ratio taken within a round")
            for text, met in lines:
                print(f"{'met     ' if met else 'NOT met '}{text}")


def median_run(runs: list[Result]) -> Result:
    """The run of median CPU per request (req/s and the rest from that same run), or of median req/s without CPU."""
    ordered = sorted(runs, key=lambda r: -r.rps if r.cpu_ms is None else r.cpu_ms)
    return ordered[len(ordered) // 2]


# ---- reporting ----

def ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}" if value is not None and base else "-"


def report(results: dict, targets: list[str], args: argparse.Namespace) -> None:
    print(f"\n## {args.seconds:g} s per run after {args.warmup:g} s warm-up; chat completions, 40-word answers "
          f"(streams: ~50 events)" + (f"; each cell the median of {args.rounds} rounds" if args.rounds > 1 else ""))
    print(f"## CPU: the proxy alone on CPU {sorted(PROXY_CPUS or ())}, upstream and load generator on "
          f"{sorted(LOAD_CPUS or ())}" if PROXY_CPUS else "## CPU: not pinned (every process on every core)")
    print("## core %: the proxy's busy share of its core; others %: CPU used meanwhile by processes this "
          "benchmark did not start (100 = one core)")
    header = ("target", "c", "stream", "req/s", "p50 ms", "p99 ms", "ttfb50", "ttfb99", "cpu ms/req", "core %",
              "+p50 ms", "+ttfb50", "others %")
    rows = [header]
    for connections, stream in SCENARIOS:
        for name in targets:
            direct = results.get((_direct_of(name), connections, stream))
            r = results[name, connections, stream]
            rows.append((name, str(connections), "yes" if stream else "no", f"{r.rps:.0f}", f"{r.p50:.2f}",
                         f"{r.p99:.2f}", f"{r.ttfb50:.2f}", f"{r.ttfb99:.2f}",
                         f"{r.cpu_ms:.3f}" if r.cpu_ms is not None else "-",
                         f"{r.busy * 100:.0f}" if r.busy is not None else "-",
                         f"{r.p50 - direct.p50:+.2f}" if direct else "-",
                         f"{r.ttfb50 - direct.ttfb50:+.2f}" if direct else "-", f"{r.others * 100:.0f}"))
    print_table(rows)

    print("\n## ratios: x direct / x floor")
    figures = ("rps", "p50", "p99", "ttfb50", "ttfb99", "cpu_ms")
    rows = [("target", "c", "stream", "req/s", "p50", "p99", "ttfb50", "ttfb99", "cpu/req")]
    for connections, stream in SCENARIOS:
        direct, floor = results.get(("direct", connections, stream)), results.get(("floor", connections, stream))
        for name in targets:
            r = results[name, connections, stream]
            rows.append((name, str(connections), "yes" if stream else "no", *(
                f"{ratio(getattr(r, f), getattr(direct, f, None))} / {ratio(getattr(r, f), getattr(floor, f, None))}"
                for f in figures)))
    print_table(rows)
    errors = {f"{n} c={c} {'stream' if s else 'whole'}": r.errors for (n, c, s), r in results.items() if r.errors}
    if errors:
        print(f"\n## errors (not counted in any figure): {errors}")
    print_targets(results, targets)
    if lines := profiles.summary(results, targets, SCENARIOS):
        print("\n## profiles (issue 13)")
        for text, met in lines:
            print(f"{'' if met is None else 'met     ' if met else 'NOT met '}{text}")


def _direct_of(name: str) -> str:
    """The baseline a target's added latency is measured against: the fake upstream of its own API."""
    return "direct-messages" if name.endswith(MESSAGES_SUFFIX) else "direct"


def print_targets(results: dict, targets: list[str]) -> None:
    """The issue's targets, where this run has what they need."""
    if "thriftgate" not in targets:
        return
    tg = {(c, s): results["thriftgate", c, s] for c, s in SCENARIOS}
    checks = []
    if "direct" in targets:
        added = tg[1, False].p50 - results["direct", 1, False].p50
        checks.append((f"added p50 at c=1 < 1 ms: {added:+.2f} ms", added < 1))
        added = tg[1, True].ttfb50 - results["direct", 1, True].ttfb50
        checks.append((f"added streamed time to first byte at c=1 < 1 ms: {added:+.2f} ms", added < 1))
    if "floor" in targets:
        for c, s in SCENARIOS:
            x = tg[c, s].cpu_ms / results["floor", c, s].cpu_ms
            checks.append((f"CPU/request <= 2x floor, c={c} {'stream' if s else 'whole'}: {x:.2f}x", x <= 2))
    if "thriftgate-routed" in targets:
        for c, s in SCENARIOS:
            x = results["thriftgate-routed", c, s].cpu_ms / tg[c, s].cpu_ms
            checks.append((f"CPU/request with routing <= 1.10x without, c={c} {'stream' if s else 'whole'}: {x:.2f}x",
                           x <= 1.10))
    if "litellm" in targets:
        for s in (False, True):
            x = tg[32, s].rps / results["litellm", 32, s].rps
            checks.append((f"req/s at c=32 >= 15x LiteLLM, {'stream' if s else 'whole'}: {x:.1f}x", x >= 15))
    if "portkey" in targets:  # no target set: a figure beside the others
        for s in (False, True):
            x = tg[32, s].rps / results["portkey", 32, s].rps
            checks.append((f"req/s at c=32 vs Portkey's gateway, {'stream' if s else 'whole'}: {x:.2f}x", None))
    if {"direct", "thriftgate", "direct-messages", "thriftgate-messages"} <= set(targets):
        for c, s in SCENARIOS:
            chat = tg[c, s].p50 - results["direct", c, s].p50
            messages = results["thriftgate-messages", c, s].p50 - results["direct-messages", c, s].p50
            cpu = results["thriftgate-messages", c, s].cpu_ms / tg[c, s].cpu_ms
            where = f"c={c} {'stream' if s else 'whole'}"
            checks.append((f"Messages path overhead within 10% of the chat path, {where}: added p50 {messages:+.2f} "
                           f"vs {chat:+.2f} ms, CPU/request {cpu:.2f}x", cpu <= 1.1))
    print("\n## targets")
    for text, met in checks:
        print(f"{'       ' if met is None else 'met    ' if met else 'NOT met'}  {text}")


def print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))


# ---- memory ----

def run_memory(args: argparse.Namespace, procs: Processes) -> None:
    """RSS of thriftgate (or --profile's first) as --memory-requests (c=32, streamed and not in turn) go through it."""
    _, upstream_port = start_upstream(procs)
    name = f"thriftgate:{args.profile.split(',')[0]}" if args.profile else "thriftgate"
    target = start_target(name, procs, upstream_port, args)
    pid, sent, stream = target.proc.pid, 0, False
    print(f"requests  RSS MiB   (thriftgate pid {pid})")
    print(f"{0:>8}  {rss_mib(pid):7.1f}   idle after start")
    measure(procs, target, 32, False, 2, 0)  # first-use allocations are not growth: warm up before the baseline
    measure(procs, target, 32, True, 2, 0)
    print(f"{0:>8}  {rss_mib(pid):7.1f}   after 4 s of warm-up")
    while sent < args.memory_requests:
        result = measure(procs, target, 32, stream, 5, 0)
        sent += round(result.rps * 5)
        stream = not stream
        print(f"{sent:>8}  {rss_mib(pid):7.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy_overhead", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time of each run (default 10)")
    parser.add_argument("--rounds", type=int, default=1, help="measure every cell this many times, targets "
                        "interleaved, and report each cell's median run (default 1)")
    parser.add_argument("--keep-running", action="store_true", help="start every target once and measure them "
                        "in turn each round, rather than start each target anew for each of its runs")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured time before each run (default 1)")
    parser.add_argument("--targets", default=DEFAULT_TARGETS, help=f"comma-separated (default {DEFAULT_TARGETS})")
    parser.add_argument("--litellm-python", type=Path, default=Path("/tmp/litellm-venv/bin/python"))
    parser.add_argument("--portkey-dir", type=Path, default=Path("/tmp/portkey-gateway"),
                        help="where `npm install @portkey-ai/gateway` ran (default /tmp/portkey-gateway)")
    parser.add_argument("--memory", action="store_true", help="RSS of thriftgate over --memory-requests requests")
    parser.add_argument("--memory-requests", type=int, default=MEMORY_REQUESTS, help=f"default {MEMORY_REQUESTS}")
    parser.add_argument("--profile", help=f"comma-separated thriftgate profiles ({', '.join(profiles.PROFILES)}), "
                        "measured beside the floor at c=1 and c=32 (bench/profiles.py)")
    parser.add_argument("--connections", default="1,32", help="with --profile: the concurrencies to measure "
                        "(default 1,32; issue 13's targets are at 32)")
    parser.add_argument("--workers", help="with --profile: compare `serve --workers` counts, e.g. 1,2, at c=64, "
                        "unpinned (every core)")
    args = parser.parse_args()
    global SCENARIOS, PROXY_CPUS
    if args.profile:
        chosen = [p for p in args.profile.split(",") if p]
        if args.workers:
            args.targets = ",".join(f"thriftgate:{p}@w{n}" for p in chosen for n in args.workers.split(","))
            SCENARIOS, PROXY_CPUS = ((64, False),), None
        else:
            args.targets = ",".join(["floor", *(f"thriftgate:{p}" for p in chosen)])
            SCENARIOS = tuple((int(c), False) for c in args.connections.split(","))
        profiles.prepare(set(chosen))
    # So that the finally below runs: SIGTERM exits, and SIGINT raises even when started with it ignored (`cmd &`).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    print(f"# {platform.node()}: {os.cpu_count()} CPUs ({cpu_model()}), Linux {platform.release()}, "
          f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="thriftgate-bench-") as work:
        procs = Processes(Path(work))
        try:
            args.redis_url = start_redis(procs) if args.profile and profiles.uses_redis(set(chosen)) else None
            (run_memory if args.memory else run_benchmark)(args, procs)
        finally:
            procs.stop_all()
            if args.profile:
                profiles.clean_up({p for p in args.profile.split(",") if p})


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


if __name__ == "__main__":
    main()
