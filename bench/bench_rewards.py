"""Reward benchmarks: the ``reward_func`` OpenRLHF calls once per sample, and the HTTP reward service.

    python bench/run.py --only rewards [--quick]

1. ``reward_func`` of the ``act_judgment`` entry file, loaded by path with ``importlib`` as OpenRLHF
   loads it, on one realistic sample (ChatML judgment prompt, ~2 KB reasoning + verdict, JSON label):
   p50 per call, and its ratio to one compiled ``re.search`` of the answer tag over the same response,
   both timed in this run. The note says where the reward's time goes.
2. The HTTP service under 32 concurrent keep-alive clients (a separate load-generator process, aiohttp,
   loopback only, bounded in requests and seconds): requests/s and p99 latency, side by side with
   ``bench/reference_fastapi_app.py`` (FastAPI + uvicorn, same reward, same payload). Each server runs
   one worker: the machine has 2 cores and the load generator needs the other one.
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
from pathlib import Path

from bench.common import BenchResult, at_least, at_most, below, percentile

REPO = Path(__file__).resolve().parents[1]
CONCURRENCY = 32
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
    from openrlhf_act.registry import get_reward

    spec = importlib.util.spec_from_file_location("reward_func", get_reward(name).entry_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reward_func


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


def _run_load(url: str, body_file: str, seconds: float, warmup_s: float, max_requests: int) -> dict:
    cmd = [sys.executable, "-m", "bench.bench_rewards", "loadgen", url, body_file]
    cmd += ["--seconds", str(seconds), "--warmup", str(warmup_s), "--max-requests", str(max_requests)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=seconds + warmup_s + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


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


def _measure(cmd: list[str], port: int, body: bytes, body_file: str, seconds: float, warmup_s: float) -> dict:
    """One server under load: throughput, latency percentiles, and the server's CPU per request."""
    url = f"http://127.0.0.1:{port}/get_reward"
    proc = _start(cmd, port)
    try:
        _check_answer(url, body)
        cpu_before = _cpu_seconds(proc.pid)
        load = _run_load(url, body_file, seconds, warmup_s, max_requests=int(20000 * (seconds + warmup_s)))
        cpu_s = _cpu_seconds(proc.pid) - cpu_before
    finally:
        _stop(proc)
    latencies = load["latencies_ms"]
    return {
        "rps": len(latencies) / load["window_s"],
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "timed": len(latencies),
        "errors": load["errors"],
        "cpu_us": cpu_s / max(load["requests_sent"], 1) * 1e6,
    }


def bench_http(quick: bool) -> list[BenchResult]:
    query, prompt, label, _ = realistic_sample()
    body = json.dumps({"query": [query], "prompts": [prompt], "labels": [label]}).encode()
    seconds, warmup_s, rounds = (2.0, 0.5, 1) if quick else (5.0, 1.0, 2)
    best: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        body_file = str(Path(tmp) / "body.json")
        Path(body_file).write_bytes(body)
        for _ in range(rounds):  # alternate the servers so all see the same background load
            for name, cmd in _servers(port := _free_port()).items():
                load = _measure(cmd, port, body, body_file, seconds, warmup_s)
                if name not in best or load["rps"] > best[name]["rps"]:
                    best[name] = load
    ours, ref, floor = best["ours"], best["FastAPI"], best["floor"]
    setup = (
        f"{CONCURRENCY} keep-alive clients, {SERVER_WORKERS} server worker (2 cores: the load generator needs the "
        f"other), {len(body)} B requests, best of {rounds} x {seconds:g} s"
    )

    def detail(load: dict) -> str:
        return (
            f"p50 {load['p50']:.2f} ms, p99 {load['p99']:.1f} ms, {load['errors']} errors, {load['timed']} timed; "
            f"server CPU {load['cpu_us']:.0f} us/request"
        )

    def info(name: str, value: float, unit: str, note: str) -> BenchResult:
        return BenchResult(name, value, unit, "reference", True, note)

    return [
        at_least("rewards: http req/s (ours, aiohttp)", ours["rps"], 2000, "req/s", f"{setup}; {detail(ours)}"),
        below("rewards: http p99 latency (ours)", ours["p99"], 50, "ms", detail(ours)),
        info("rewards: http req/s (FastAPI reference)", ref["rps"], "req/s", detail(ref)),
        info("rewards: http req/s ours / FastAPI", ours["rps"] / ref["rps"], "x", "same run"),
        info("rewards: http server CPU/req ours / FastAPI", ours["cpu_us"] / ref["cpu_us"], "x", "lower is better"),
        info(
            "rewards: http req/s ours / aiohttp floor",
            ours["rps"] / floor["rps"],
            "x",
            f"floor: aiohttp handler returning a constant, no reward, same load: {floor['rps']:.0f} req/s, "
            f"{detail(floor)}; what this machine allows any aiohttp service",
        ),
    ]


def run(quick: bool) -> list[BenchResult]:
    return bench_reward_func(quick) + bench_http(quick)


# ---------------------------------------------------------------- load generator (its own process)


async def _generate_load(url: str, body: bytes, seconds: float, warmup_s: float, max_requests: int) -> dict:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    sent = 0
    clock = time.perf_counter
    measure_from = clock() + warmup_s
    stop_at = measure_from + seconds
    last_end = measure_from
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
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
        await asyncio.gather(*(client(session) for _ in range(CONCURRENCY)))
    window_s = max(last_end - measure_from, 1e-9)
    return {"latencies_ms": latencies, "errors": errors, "window_s": window_s, "requests_sent": sent}


def _loadgen_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="bounded loopback load generator for bench_rewards")
    parser.add_argument("url")
    parser.add_argument("body_file")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--max-requests", type=int, required=True)
    args = parser.parse_args(argv)
    if not args.url.startswith(("http://127.0.0.1:", "http://localhost:")):
        parser.error("the load generator targets loopback only")
    body = Path(args.body_file).read_bytes()
    loop = _new_loop()
    try:
        result = loop.run_until_complete(_generate_load(args.url, body, args.seconds, args.warmup, args.max_requests))
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
