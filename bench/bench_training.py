"""The CPU pipeline through OpenRLHF's own trainers: wall time of each step and stage, and our reward's share
of a GRPO step.

Runs ``openrlhf-act demo`` (tiny model, ScienceWorld data, STAGES=act,il,rl with PRESET=cpu, eval) in a
temporary folder, or reads an existing demo folder given in ``BENCH_TRAINING_DIR`` (no rerun). The reward's
share: OpenRLHF times each GRPO step (``train/timing/step_total``) but not the reward inside it, so the
reward entry file is loaded as OpenRLHF loads it and timed on that stage's own rows, with responses as long
as the run's mean (``train/response_chars``); share = seconds per sample x samples per step / step time.
The same per-sample cost is also stated against a GPU-class step (the paper preset's samples per step and an
assumed GPU step time, :func:`bench.bench_rewards.gpu_class_share`): a CPU step is slow, so its share hides
what the reward costs next to a GPU. ``bench/run.py --only rewards`` gives that row without the demo.
The whole ``.ci/run`` prints its own wall time at the end ("CI took N s").
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_rewards import gpu_class_share, load_entry_reward_func
from bench.common import BenchResult, below
from openrlhf_act.devtools.tensorboard_logs import read_scalars

STAGE_DONE = re.compile(r"pipeline: stage (\d+) \((\w+)\) finished in (\d+) s")


def _reward_share(stage_dir: Path, data_file: Path, reward: str) -> tuple[float, float, str]:
    logged = read_scalars(stage_dir)

    def mean(tag: str) -> float:
        return sum(value for _, value in logged[tag]) / len(logged[tag])

    step_s, samples = mean("train/timing/step_total"), mean("train/rollout/num_samples")
    chars = int(mean("train/response_chars"))
    reward_func = load_entry_reward_func(reward)
    rows = [json.loads(line) for line in data_file.read_text().splitlines()[:64]]
    response = ("x" * max(chars - 26, 0)) + "<answer>Action 1</answer>"
    calls = 0
    start = time.perf_counter()
    while time.perf_counter() - start < 1.0:
        for row in rows:
            prompt = "\n".join(m["content"] for m in row["prompt"])
            reward_func([prompt + response], [prompt], [row["label"]])
            calls += 1
    per_sample = (time.perf_counter() - start) / calls
    share = per_sample * samples / step_s
    return share, per_sample, f"{per_sample * 1e6:.0f} us/sample x {samples:.0f} samples / {step_s:.1f} s step"


def run(quick: bool) -> list[BenchResult]:
    given = os.environ.get("BENCH_TRAINING_DIR")
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        out = Path(given) if given else Path(tmp) / "demo"
        if not given:
            start = time.monotonic()
            done = subprocess.run([sys.executable, "-m", "openrlhf_act", "demo", "--out", str(out)])
            if done.returncode != 0:
                raise RuntimeError(f"openrlhf-act demo failed (status {done.returncode}); logs in {out}/logs")
            total = time.monotonic() - start
        else:
            total = float("nan")
        results = []
        timings = json.loads((out / "timings.json").read_text())
        for step, seconds in timings.items():
            results.append(BenchResult(f"training: demo step '{step}' wall time", seconds, "s", "reported", True))
        pipeline_log = (out / "logs" / "pipeline.log").read_text()
        for number, stage, seconds in STAGE_DONE.findall(pipeline_log):
            results.append(
                BenchResult(f"training: stage {number} {stage} wall time", float(seconds), "s", "reported", True)
            )
        if not given:
            results.append(BenchResult("training: whole demo wall time", total, "s", "reported", True))
        pipeline = next((out / "runs").iterdir())
        for folder, data, reward in (("1-act", "act", "act_judgment"), ("3-rl", "next_action", "next_action")):
            share, per_sample, note = _reward_share(pipeline / folder, out / "data" / data / "train.jsonl", reward)
            results.append(below(f"training: {reward} reward share of a GRPO step", share * 100, 1, "%", note))
            results.append(gpu_class_share("training", reward, per_sample, f"the demo's {data} rows"))
        return results
