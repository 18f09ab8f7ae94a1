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
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.common import BenchResult, at_least, at_most, below, cpu_seconds, percentile

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


# ---------------------------------------------------------------- 1b. next_action on a ScienceWorld-sized state

# The GPU-class step the reward's share is stated against: one GRPO step of the paper preset (Qwen3-8B, one node
# of 8x80 GB GPUs: rollout of ROLLOUT_BATCH x GROUP_SIZE samples, scoring, training). An assumption, printed with
# the figure: a fast step; slower steps make the share smaller.
GPU_STEP_S = 60.0
OBJECTS = (
    "air", "agent", "inventory", "art studio", "hallway", "kitchen", "table", "chair", "sink", "stove", "oven",
    "fridge", "freezer", "counter", "lighter", "thermometer", "metal pot", "glass jar", "tin cup", "bowl",
    "banana", "orange", "apple", "soap", "painting", "picture", "door to hallway", "door to kitchen",
    "cup containing red paint in art studio", "cup containing blue paint", "wood cup containing yellow paint",
    "glass cup containing nothing", "substance in metal pot", "red paint in cup", "blue paint on table",
    "large cupboard", "light bulb", "battery", "wire", "ceramic cup",
)  # fmt: skip
ONE_OBJECT = ("open", "close", "activate", "deactivate", "focus on", "look at", "look in", "pick up", "eat", "mix")
TWO_OBJECTS = ("move {} to {}", "pour {} into {}", "connect {} to {}", "dunk {} into {}", "use {} on {}")


def scienceworld_sized_admissible(size: int = 1000) -> list[str]:
    """``size`` commands shaped like a ScienceWorld state's admissible list (its templates and referents)."""
    commands = [f"{verb} {obj}" for verb in ONE_OBJECT for obj in OBJECTS]
    commands += [t.format(a, b) for t in TWO_OBJECTS for a in OBJECTS for b in OBJECTS if a != b]
    return commands[:size]


def paper_samples_per_step() -> tuple[int, int]:
    """(ROLLOUT_BATCH, GROUP_SIZE) of the paper preset, as ``recipes/rl.sh`` resolves them."""
    from openrlhf_act.recipe_check import list_settings, read_recipe

    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    settings = {name: value for name, value, _ in list_settings(read_recipe(REPO / "recipes" / "rl.sh"), "paper", env)}
    return int(settings["ROLLOUT_BATCH"]), int(settings["GROUP_SIZE"])


def gpu_class_share(bench: str, reward: str, per_sample_s: float, source: str) -> BenchResult:
    """The reward's share of a GPU-class GRPO step: per-sample cost x the paper preset's samples per step
    (scored one after another: the reward runs in threads of one Python process) / :data:`GPU_STEP_S`."""
    prompts, group = paper_samples_per_step()
    seconds = per_sample_s * prompts * group
    note = (
        f"{per_sample_s * 1e6:.1f} us/sample ({source}) x {prompts * group} samples (paper preset: ROLLOUT_BATCH "
        f"{prompts} x GROUP_SIZE {group}) = {seconds:.3f} s per step, against an assumed {GPU_STEP_S:.0f} s GPU step "
        "(Qwen3-8B GRPO on 8x80 GB: rollout, scoring and training)"
    )
    return below(f"{bench}: {reward} reward share of a GPU-class GRPO step", 100 * seconds / GPU_STEP_S, 1, "%", note)


def bench_next_action(quick: bool) -> list[BenchResult]:
    """``reward_func`` of the ``next_action`` entry file on a state with 1,000 admissible commands. GRPO scores
    each label once per sample of its group: the first call decodes and indexes the label (cold), the others
    find it in the label cache (warm, the p50). Every call gets its own copy of the label string, as samples
    arriving from other processes do, so the string is hashed each time. Floor: one ``json.loads`` of it."""
    from openrlhf_act.actions import admissible_index
    from openrlhf_act.rewards import next_action
    from openrlhf_act.schema import NextActionLabel, encode_label

    admissible = scienceworld_sized_admissible()
    expert = "move metal pot to stove"
    label = encode_label(NextActionLabel(expert, tuple(admissible), "boil-3", "scienceworld", 5))
    prompt = "<|im_start|>user\nYour task is to boil water.<|im_end|>\n<|im_start|>assistant\n"
    response = "Thought: the water must be heated.\nAction: move metal pot to stove<|im_end|>"
    reward_func = load_entry_reward_func("next_action")
    if reward_func([prompt + response], [prompt], [label])["rewards"] != 1.0:
        raise RuntimeError("the benchmark sample should score 1.0")
    calls, rounds = (300, 3) if quick else (1000, 5)
    copies = iter([label.encode().decode() for _ in range(calls * rounds)])

    def cold() -> None:
        next_action._prepared_text.cache_clear()
        reward_func([prompt + response], [prompt], [label])

    timed = _best_p50_us(
        {
            "warm": lambda: reward_func([prompt + response], [prompt], [next(copies)]),
            "json.loads": lambda: json.loads(label),
            "cold": cold,
            "index": lambda: admissible_index(admissible),
        },
        calls,
        rounds,
    )
    _, group = paper_samples_per_step()
    per_sample = (timed["cold"] + (group - 1) * timed["warm"]) / group
    note = (
        f"label {len(label) // 1024} KB, {len(admissible)} admissible commands; first call of a label (cold) "
        f"{timed['cold']:.0f} us (of which the admissible index {timed['index']:.0f} us); mean over a group of "
        f"{group}: {per_sample:.1f} us/sample"
    )
    return [
        at_most("rewards: next_action reward_func p50, 1,000 admissible", timed["warm"], 50, "us", note),
        at_most(
            "rewards: next_action reward_func / json.loads(label) p50",
            timed["warm"] / timed["json.loads"],
            1,
            "x",
            f"floor: one json.loads of the label, p50 {timed['json.loads']:.1f} us (what decoding it on every call "
            "would cost at least)",
        ),
        gpu_class_share("rewards", "next_action", per_sample * 1e-6, f"mean of a group of {group}, this benchmark"),
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


def _check_answer(url: str, body: bytes) -> None:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    if answer["rewards"] != [1.0]:
        raise RuntimeError(f"{url} answered {answer}")


def _run_load(url: str, body_file: str, seconds: float, warmup_s: float, load: Load, server_pid: int) -> dict:
    cmd = [sys.executable, "-m", "bench.bench_rewards", "loadgen", url, body_file, "--server-pid", str(server_pid)]
    cmd += [
        "--seconds",
        str(seconds),
        "--warmup",
        str(warmup_s),
        "--max-requests",
        str(int(20000 * (seconds + warmup_s))),
    ]
    cmd += ["--concurrency", str(load.clients), "--idle", str(load.idle)]
    cmd += ["--new-connection"] if load.new_connection else []
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

    def held(self) -> Load:
        return Load(self.clients, self.new_connection, IDLE_CONNECTIONS)


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
             warmup_s: float) -> list[tuple[Load, dict]]:  # fmt: skip
    """One server, started once, under each load in turn: throughput, latency percentiles, and the CPU per
    request of the server and of the load generator, both over the measured window only."""
    url = f"http://127.0.0.1:{port}/get_reward"
    proc = _start(cmd, port)
    results = []
    try:
        _check_answer(url, body)
        for load in loads:
            run = _run_load(url, body_file, seconds, warmup_s, load, proc.pid)
            latencies, sent = run["latencies_ms"], max(run["measured_sent"], 1)
            results.append((load, {
                "rps": len(latencies) / run["window_s"],
                "p50": percentile(latencies, 50),
                "p99": percentile(latencies, 99),
                "timed": len(latencies),
                "errors": run["errors"],
                "idle_held": run["idle_held"],
                "cpu_us": run["server_cpu_s"] / sent * 1e6,
                "generator_cpu_us": run["generator_cpu_s"] / sent * 1e6,
            }))  # fmt: skip
    finally:
        _stop(proc)
    return results


def _detail(run: dict) -> str:
    return (
        f"p50 {run['p50']:.2f} ms, p99 {run['p99']:.1f} ms, {run['errors']} errors, {run['timed']} timed; "
        f"CPU per request: server {run['cpu_us']:.0f} us, load generator {run['generator_cpu_us']:.0f} us"
    )


def _paired(loads: list[Load], pairs: int) -> list[Load]:
    """Each load without and with the idle connections, back to back, in alternating order (AB, BA, ...), so
    both sides of a pair see the same background load and drift."""
    return [
        x for i in range(pairs) for load in loads for x in ((load, load.held()) if i % 2 == 0 else (load.held(), load))
    ]


def _idle_rows(load: Load, runs: list[tuple[Load, dict]]) -> list[BenchResult]:
    """Median over the pairs of (with idle connections / without): throughput, and each process's CPU per request."""
    without = [run for measured, run in runs if measured == load]
    held = [run for measured, run in runs if measured == load.held()]
    ratios = {key: [h[key] / w[key] for w, h in zip(without, held)] for key in ("rps", "cpu_us", "generator_cpu_us")}
    rps = ratios["rps"]
    worst = min(held, key=lambda run: run["idle_held"])["idle_held"]
    return [
        at_least(
            f"rewards: http req/s with {IDLE_CONNECTIONS} idle connections / without, {load}",
            statistics.median(rps),
            0.9,
            "x",
            f"median of {len(rps)} back-to-back pairs (" + ", ".join(f"{r:.2f}" for r in rps) + "); CPU per request "
            f"with / without: server {statistics.median(ratios['cpu_us']):.2f}x, load generator "
            f"{statistics.median(ratios['generator_cpu_us']):.2f}x; at least {worst} idle connections still open "
            "at the end (plain sockets outside the load generator's event loop)",
        ),
        below(
            f"rewards: http p99 with {IDLE_CONNECTIONS} idle connections, {load}",
            statistics.median(run["p99"] for run in held),
            50,
            "ms",
            f"median of {len(held)}; without: {statistics.median(run['p99'] for run in without):.1f} ms; "
            + _detail(max(held, key=lambda run: run["rps"])),
        ),
    ]


def bench_http(quick: bool) -> list[BenchResult]:
    query, prompt, label, _ = realistic_sample()
    body = json.dumps({"query": [query], "prompts": [prompt], "labels": [label]}).encode()
    seconds, warmup_s, rounds, pairs = (1.5, 0.5, 1, 6) if quick else (4.0, 1.0, 2, 3)
    best: dict[tuple[str, Load], dict] = {}
    idle_runs: list[tuple[Load, dict]] = []
    with tempfile.TemporaryDirectory() as tmp:
        body_file = str(Path(tmp) / "body.json")
        Path(body_file).write_bytes(body)
        for _ in range(rounds):  # alternate the servers so all see the same background load
            for name, cmd in _servers(port := _free_port()).items():
                loads = _paired(LOADS, pairs) if name == "ours" else LOADS
                runs = _measure(cmd, port, body, body_file, loads, seconds, warmup_s)
                idle_runs += runs if name == "ours" else []
                for load, run in runs:
                    if (name, load) not in best or run["rps"] > best[name, load]["rps"]:
                        best[name, load] = run
    setup = (
        f"{SERVER_WORKERS} server worker (2 cores: the load generator needs the other), {len(body)} B requests, "
        f"best of {rounds * pairs} x {seconds:g} s (the other servers: of {rounds})"
    )

    def info(name: str, value: float, unit: str, note: str) -> BenchResult:
        return BenchResult(name, value, unit, "reference", True, note)

    results = []
    for load in LOADS:
        ours, ref, floor = best["ours", load], best["FastAPI", load], best["floor", load]
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
            *_idle_rows(load, idle_runs),
        ]
    return results


def run(quick: bool) -> list[BenchResult]:
    return bench_reward_func(quick) + bench_next_action(quick) + bench_response_location(quick) + bench_http(quick)


# ---------------------------------------------------------------- load generator (its own process)


async def _generate_load(url: str, body: bytes, seconds: float, warmup_s: float, max_requests: int,
                         clients: int, new_connection: bool, idle: int, server_pid: int) -> dict:  # fmt: skip
    import aiohttp

    latencies: list[float] = []
    errors = 0
    sent = 0
    measured_sent = 0
    clock = time.perf_counter
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    # Connections that send nothing, held open for the whole run as plain sockets: not registered with this
    # event loop, so they cost the generator nothing and what the figures show is the server's cost.
    held = [socket.create_connection((host, int(port))) for _ in range(idle)]
    measure_from = clock() + warmup_s
    stop_at = measure_from + seconds
    last_end = measure_from
    connector = aiohttp.TCPConnector(limit=clients, force_close=new_connection)
    headers = {"Content-Type": "application/json"}

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal errors, sent, measured_sent, last_end
        while sent < max_requests:
            start = clock()
            if start >= stop_at:
                return
            sent += 1
            measured_sent += start >= measure_from
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

    cpu: dict[str, float] = {}

    async def sample_cpu_at_window_start() -> None:
        await asyncio.sleep(max(measure_from - clock(), 0))
        cpu["generator"], cpu["server"] = time.process_time(), cpu_seconds(server_pid)

    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        await asyncio.gather(sample_cpu_at_window_start(), *(client(session) for _ in range(clients)))
    generator_cpu_s = time.process_time() - cpu["generator"]
    server_cpu_s = cpu_seconds(server_pid) - cpu["server"]
    still_open = sum(map(_still_open, held))
    for sock in held:
        sock.close()
    window_s = max(last_end - measure_from, 1e-9)
    return {"latencies_ms": latencies, "errors": errors, "window_s": window_s, "requests_sent": sent,
            "idle_held": still_open, "measured_sent": measured_sent, "generator_cpu_s": generator_cpu_s,
            "server_cpu_s": server_cpu_s}  # fmt: skip


def _still_open(sock: socket.socket) -> bool:
    """Nothing to read and no end of stream: the server has not closed this idle connection."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


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
    parser.add_argument("--server-pid", type=int, default=0, help="the server process, for its CPU in the window")
    args = parser.parse_args(argv)
    if not args.url.startswith(("http://127.0.0.1:", "http://localhost:")):
        parser.error("the load generator targets loopback only")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    body = Path(args.body_file).read_bytes()
    loop = _new_loop()
    try:
        load = (args.max_requests, args.concurrency, args.new_connection, args.idle, args.server_pid)
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
