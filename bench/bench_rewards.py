"""Reward benchmarks: the ``reward_func`` OpenRLHF calls once per sample, and the HTTP reward service.

    python bench/run.py --only rewards [--quick]

1. ``reward_func`` of the ``act_judgment`` entry file, loaded by path with ``importlib`` as OpenRLHF
   loads it, on one realistic sample (ChatML judgment prompt, ~2 KB reasoning + verdict, JSON label):
   p50 per call, and its ratio to one compiled ``re.search`` of the answer tag over the same response,
   both timed in this run. The note says where the reward's time goes.
   Locating the response in a 1 MB query that does not start with its prompt (a left-truncated or hostile
   query): the full ``reward_func``, next to one C-speed scan of the same query.
2. The HTTP service under 32 and 256 concurrent clients, keep-alive and with a new connection per request
   (as OpenRLHF's client does), from a separate load-generator process (aiohttp, loopback only, bounded in
   requests and seconds): requests/s and p99 latency, side by side with ``bench/reference_fastapi_app.py``
   (FastAPI + uvicorn, same reward, same payload) and an aiohttp handler returning a constant (the floor);
   then ours again while the load generator holds 500 idle connections. Each server runs one worker: the
   machine has 2 cores and the load generator needs the other one.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.common import BenchResult, at_least, at_most, below, percentile

REPO = Path(__file__).resolve().parents[1]
SERVER_WORKERS = 1
START_TIMEOUT_S = 60.0
ANSWER_TAG = re.compile(r"<answer\s*>(.*?)</answer\s*>", re.IGNORECASE | re.DOTALL)


# ---------------------------------------------------------------- one realistic sample


def realistic_sample() -> tuple[str, str, str, str]:
    """(query, prompt, label, response): a ScienceWorld contrast prompt in ChatML, ~2 KB response."""
    from openrlhf_act.prompts import judgment_messages
    from openrlhf_act.schema import JudgmentLabel, State, encode_label

    history = tuple(
        (f"You are in the kitchen. The stove is {state}. In it, you see: a pot, a sink, a fridge.", action)
        for state, action in (("off", "look around"), ("off", "open fridge"), ("on", "activate stove"))
    )
    state = State(
        task_id="boil-water-7",
        env="scienceworld",
        task="Your task is to boil water. For compounds without a boiling point, combusting the substance is fine.",
        history=history,
        observation="The fridge is open. In it, you see: a glass of water, an orange, a block of cheese.",
        expert_action="pick up glass of water",
        step=3,
    )
    candidates = ("pick up glass of water", "go to hallway")
    prompt = "".join(
        f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in judgment_messages(state, candidates)
    )
    prompt += "<|im_start|>assistant\n"
    thought = (
        "Action 1 takes the water, which the task needs before it can be heated on the stove that is on. "
        "Action 2 leaves the kitchen, so the stove and the water are left behind and nothing progresses. "
    )
    reasoning = (thought * (1 + 1900 // len(thought)))[:1900]
    response = f"<think>\n{reasoning}\n</think>\n\n<answer>Action 1</answer><|im_end|>"
    label = encode_label(
        JudgmentLabel(1, candidates, candidates[0], "boil-water-7#3", state.task_id, state.env, state.step)
    )
    return prompt + response, prompt, label, response


# ---------------------------------------------------------------- 1. reward_func per call


def _p50_us(fn: Callable[[], object], calls: int) -> float:
    clock = time.perf_counter_ns
    times = []
    for _ in range(calls):
        start = clock()
        fn()
        times.append(clock() - start)
    return percentile(times, 50) / 1000


def _best_p50_us(fns: dict[str, Callable[[], object]], calls: int, rounds: int) -> dict[str, float]:
    """Interleaved rounds; the lowest p50 of each is the least disturbed by other processes."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            best[name] = min(best[name], _p50_us(fn, calls))
    return best


def load_entry_reward_func(name: str = "act_judgment") -> Callable[..., dict]:
    """The entry file's ``reward_func``, loaded exactly as OpenRLHF's SingleTurnAgentExecutor does."""
    from openrlhf_act.rewards.catalog import get_reward

    spec = importlib.util.spec_from_file_location("reward_func", get_reward(name).entry_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reward_func


def bench_response_location(quick: bool) -> list[BenchResult]:
    """A 1 MB query that does not start with its prompt and repeats the prompt's last characters all over
    (once quadratic: about 15 s per MB); and the worst shape for the linear search, a 1 MB prompt ending in
    a run of one character, cut on the left (handled by the border chain, in Python steps)."""
    from openrlhf_act.rewards.batch import response_from_query

    _, prompt, label, _ = realistic_sample()
    reward_func = load_entry_reward_func()
    tail = prompt[-64:]
    hostile = "#" * 40 + tail * (2**20 // len(tail))  # a head no prompt suffix starts with
    run_prompt = "Task: count." + "b" * 64 + "a" * 2**20
    run_query = "#garbled head#" + run_prompt[12:] + "<answer>Action 1</answer><|im_end|>"
    if reward_func([hostile], [prompt], [label])["extra_logs"]["malformed"] != 1.0:  # no response found
        raise RuntimeError("the hostile query should get the malformed reward")
    calls = 5 if quick else 20
    timed = _best_p50_us(
        {
            "hostile": lambda: reward_func([hostile], [prompt], [label]),
            "scan": lambda: hostile.find("<answer>"),
            "run": lambda: response_from_query(run_query, run_prompt),
        },
        calls,
        rounds=2,
    )
    ms = {name: value / 1000 for name, value in timed.items()}
    return [
        below(
            "rewards: reward_func on a 1 MB mismatched query",
            ms["hostile"],
            50,
            "ms",
            f"{len(hostile) / 2**20:.1f} MB query repeating the prompt's last 64 characters; one str.find over it: "
            f"{ms['scan']:.2f} ms (ratio {ms['hostile'] / max(ms['scan'], 1e-9):.1f}x)",
        ),
        BenchResult(
            "rewards: response location, 1 MB left-truncated prompt ending in a 1 MB run",
            ms["run"],
            "ms",
            "reference",
            True,
            "the border-chain path (linear, Python steps); OpenRLHF prompts are bounded by --data.max_len",
        ),
    ]


def bench_reward_func(quick: bool) -> list[BenchResult]:
    from openrlhf_act.rewards.batch import looks_truncated, response_from_query
    from openrlhf_act.rewards.config import RewardConfig
    from openrlhf_act.rewards.judgment import judgment_reward
    from openrlhf_act.schema import decode_judgment_label
    from openrlhf_act.verdict import parse_verdict

    query, prompt, label, response = realistic_sample()
    reward_func = load_entry_reward_func()
    answer = reward_func([query], [prompt], [label])
    if answer["rewards"] != 1.0:
        raise RuntimeError(f"the benchmark sample should score 1.0, got {answer}")
    config = RewardConfig()
    calls, rounds = (3000, 3) if quick else (20000, 5)
    timed = _best_p50_us(
        {
            "reward_func": lambda: reward_func([query], [prompt], [label]),
            "re.search": lambda: ANSWER_TAG.search(response),
            "response_from_query": lambda: response_from_query(query, prompt),
            "looks_truncated": lambda: looks_truncated(response, prompt),
            "decode_judgment_label": lambda: decode_judgment_label(label),
            "parse_verdict": lambda: parse_verdict(response, 2),
            "judgment_reward": lambda: judgment_reward(response, label, config),
        },
        calls,
        rounds,
    )
    p50, baseline = timed["reward_func"], timed["re.search"]
    rest = p50 - timed["judgment_reward"] - timed["response_from_query"] - timed["looks_truncated"]
    own = timed["judgment_reward"] - timed["decode_judgment_label"] - timed["parse_verdict"]
    where = (
        f"p50 us: decode_judgment_label {timed['decode_judgment_label']:.1f}, parse_verdict "
        f"{timed['parse_verdict']:.1f}, judgment_reward's own {own:.1f}, looks_truncated "
        f"{timed['looks_truncated']:.1f}, response_from_query {timed['response_from_query']:.1f}, "
        f"entry/batch wrapping {rest:.1f}"
    )
    sizes = f"response {len(response)} B, query {len(query)} B"
    return [
        at_most("rewards: reward_func p50", p50, 50, "us", f"act_judgment entry file via importlib; {sizes}"),
        at_most(
            "rewards: reward_func / re.search p50",
            p50 / baseline,
            10,
            "x",
            f"baseline: one compiled answer-tag re.search over the response, p50 {baseline:.2f} us; {where}",
        ),
    ]


# ---------------------------------------------------------------- 2. HTTP service under load


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(cmd: list[str], port: int) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}: {proc.stderr.read().decode()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.1)
    _stop(proc)
    raise RuntimeError(f"{' '.join(cmd)} did not answer /health within {START_TIMEOUT_S:g} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stderr:
        proc.stderr.close()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux ``/proc``); NaN where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _check_answer(url: str, body: bytes) -> None:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    if answer["rewards"] != [1.0]:
        raise RuntimeError(f"{url} answered {answer}")


def _run_load(url: str, body_file: str, seconds: float, warmup_s: float, load: Load) -> dict:
    cmd = [sys.executable, "-m", "bench.bench_rewards", "loadgen", url, body_file]
    cmd += [
        "--seconds",
        str(seconds),
        "--warmup",
        str(warmup_s),
        "--max-requests",
        str(int(20000 * (seconds + warmup_s))),
    ]
    cmd += ["--concurrency", str(load.clients), "--idle", str(load.idle)] + (
        ["--new-connection"] if load.new_connection else []
    )
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=seconds + warmup_s + 90, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


@dataclass(frozen=True)
class Load:
    clients: int
    new_connection: bool
    idle: int = 0

    def __str__(self) -> str:
        mode = "new connection per request" if self.new_connection else "keep-alive"
        return f"{self.clients} clients, {mode}" + (f", {self.idle} idle connections held" if self.idle else "")


LOADS = [Load(c, new) for new in (False, True) for c in (32, 256)]
IDLE_CONNECTIONS = 500


def _servers(port: int) -> dict[str, list[str]]:
    python = sys.executable
    return {
        "ours": [python, "-m", "openrlhf_act", "serve-reward", "--port", str(port), "--workers", str(SERVER_WORKERS)],
        "FastAPI": [
            python, "-m", "uvicorn", "bench.reference_fastapi_app:app", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(SERVER_WORKERS), "--log-level", "warning", "--no-access-log",
        ],
        "floor": [python, "-m", "bench.bench_rewards", "floor", str(port)],
    }  # fmt: skip


def _measure(cmd: list[str], port: int, body: bytes, body_file: str, loads: list[Load], seconds: float,
             warmup_s: float) -> dict[Load, dict]:  # fmt: skip
    """One server, started once, under each load: throughput, latency percentiles, server CPU per request."""
    url = f"http://127.0.0.1:{port}/get_reward"
    proc = _start(cmd, port)
    results = {}
    try:
        _check_answer(url, body)
        for load in loads:
            cpu_before = _cpu_seconds(proc.pid)
            run = _run_load(url, body_file, seconds, warmup_s, load)
            cpu_s = _cpu_seconds(proc.pid) - cpu_before
            latencies = run["latencies_ms"]
            results[load] = {
                "rps": len(latencies) / run["window_s"],
                "p50": percentile(latencies, 50),
                "p99": percentile(latencies, 99),
                "timed": len(latencies),
                "errors": run["errors"],
                "idle_held": run["idle_held"],
                "cpu_us": cpu_s / max(run["requests_sent"], 1) * 1e6,
            }
    finally:
        _stop(proc)
    return results


def _detail(run: dict) -> str:
    return (
        f"p50 {run['p50']:.2f} ms, p99 {run['p99']:.1f} ms, {run['errors']} errors, {run['timed']} timed; "
        f"server CPU {run['cpu_us']:.0f} us/request"
    )


def bench_http(quick: bool) -> list[BenchResult]:
    query, prompt, label, _ = realistic_sample()
    body = json.dumps({"query": [query], "prompts": [prompt], "labels": [label]}).encode()
    seconds, warmup_s, rounds = (2.0, 0.5, 1) if quick else (5.0, 1.0, 2)
    idle_loads = [Load(load.clients, load.new_connection, IDLE_CONNECTIONS) for load in LOADS]
    best: dict[tuple[str, Load], dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        body_file = str(Path(tmp) / "body.json")
        Path(body_file).write_bytes(body)
        for _ in range(rounds):  # alternate the servers so all see the same background load
            for name, cmd in _servers(port := _free_port()).items():
                loads = LOADS + idle_loads if name == "ours" else LOADS
                for load, run in _measure(cmd, port, body, body_file, loads, seconds, warmup_s).items():
                    if (name, load) not in best or run["rps"] > best[name, load]["rps"]:
                        best[name, load] = run
    setup = (
        f"{SERVER_WORKERS} server worker (2 cores: the load generator needs the other), {len(body)} B requests, "
        f"best of {rounds} x {seconds:g} s"
    )

    def info(name: str, value: float, unit: str, note: str) -> BenchResult:
        return BenchResult(name, value, unit, "reference", True, note)

    results = []
    for load in LOADS:
        ours, ref, floor = best["ours", load], best["FastAPI", load], best["floor", load]
        held = best["ours", Load(load.clients, load.new_connection, IDLE_CONNECTIONS)]
        results += [
            info(f"rewards: http req/s, {load} (ours)", ours["rps"], "req/s", f"{setup}; {_detail(ours)}"),
            info(f"rewards: http req/s, {load}: FastAPI", ref["rps"], "req/s", _detail(ref)),
            info(
                f"rewards: http req/s, {load}: aiohttp floor",
                floor["rps"],
                "req/s",
                f"constant answer; {_detail(floor)}",
            ),
            info(f"rewards: http req/s ours / FastAPI, {load}", ours["rps"] / ref["rps"], "x", "same run"),
            info(f"rewards: http req/s ours / floor, {load}", ours["rps"] / floor["rps"], "x", "same run"),
            at_least(
                f"rewards: http req/s with {IDLE_CONNECTIONS} idle connections / without, {load}",
                held["rps"] / ours["rps"],
                0.9,
                "x",
                f"{held['idle_held']} idle connections held open by the load generator; {_detail(held)}",
            ),
            below(
                f"rewards: http p99 with {IDLE_CONNECTIONS} idle connections, {load}",
                held["p99"],
                50,
                "ms",
                _detail(held),
            ),
        ]
    return results


def run(quick: bool) -> list[BenchResult]:
    return bench_reward_func(quick) + bench_response_location(quick) + bench_http(quick)


# ---------------------------------------------------------------- load generator (its own process)


async def _generate_load(url: str, body: bytes, seconds: float, warmup_s: float, max_requests: int,
                         clients: int, new_connection: bool, idle: int) -> dict:  # fmt: skip
    import aiohttp

    latencies: list[float] = []
    errors = 0
    sent = 0
    clock = time.perf_counter
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    held = []
    for _ in range(idle):  # connections that send nothing, held open for the whole run
        held.append(await asyncio.open_connection(host, int(port)))
    measure_from = clock() + warmup_s
    stop_at = measure_from + seconds
    last_end = measure_from
    connector = aiohttp.TCPConnector(limit=clients, force_close=new_connection)
    headers = {"Content-Type": "application/json"}

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal errors, sent, last_end
        while sent < max_requests:
            start = clock()
            if start >= stop_at:
                return
            sent += 1
            try:
                async with session.post(url, data=body) as response:
                    await response.read()
                    ok = response.status == 200
            except aiohttp.ClientError:
                ok = False
            end = clock()
            if start >= measure_from:
                last_end = max(last_end, end)
                if ok:
                    latencies.append((end - start) * 1000)
                else:
                    errors += 1

    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    still_open = sum(not reader.at_eof() for reader, _ in held)
    for _, writer in held:
        writer.close()
    window_s = max(last_end - measure_from, 1e-9)
    return {"latencies_ms": latencies, "errors": errors, "window_s": window_s, "requests_sent": sent,
            "idle_held": still_open}  # fmt: skip


def _loadgen_main(argv: list[str]) -> int:
    import resource

    parser = argparse.ArgumentParser(description="bounded loopback load generator for bench_rewards")
    parser.add_argument("url")
    parser.add_argument("body_file")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--max-requests", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--new-connection", action="store_true", help="a new connection per request")
    parser.add_argument("--idle", type=int, default=0, help="idle connections to hold open meanwhile")
    args = parser.parse_args(argv)
    if not args.url.startswith(("http://127.0.0.1:", "http://localhost:")):
        parser.error("the load generator targets loopback only")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    body = Path(args.body_file).read_bytes()
    loop = _new_loop()
    try:
        load = (args.max_requests, args.concurrency, args.new_connection, args.idle)
        result = loop.run_until_complete(_generate_load(args.url, body, args.seconds, args.warmup, *load))
    finally:
        loop.close()
    json.dump(result, sys.stdout)
    return 0


# ---------------------------------------------------------------- floor server (its own process)


async def _serve_floor(port: int) -> None:
    """The cheapest aiohttp service: reads the body, answers a constant of the usual size."""
    from aiohttp import web

    keys = ("accuracy", "malformed", "pred_first", "gold_first", "correct_gold_first", "correct_gold_second")
    payload = json.dumps({"rewards": [1.0], "scores": [1.0], "extra_logs": {k: [0.0] for k in keys}}).encode()

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=payload, content_type="application/json")

    app = web.Application()
    app.router.add_post("/get_reward", answer)
    app.router.add_get("/health", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()  # until SIGTERM


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


if __name__ == "__main__":
    if sys.argv[1:2] == ["loadgen"]:
        raise SystemExit(_loadgen_main(sys.argv[2:]))
    if sys.argv[1:2] == ["floor"] and len(sys.argv) == 3:
        _new_loop().run_until_complete(_serve_floor(int(sys.argv[2])))
    sys.exit("usage: python -m bench.bench_rewards loadgen URL BODY_FILE ... | floor PORT  (see bench/run.py)")
