"""Benchmark 1: ingest + state building + prompt rendering, no sampling (canonical JSONL).

Targets (issue "Foundation and data tools"): >= 20,000 states/s on one core, and streaming memory:
peak RSS at 200k states <= 1.5x peak RSS at 20k states. Each measurement runs in a fresh child
process so its peak RSS is its own.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import BenchResult, at_least, at_most

STEPS_PER_TRAJECTORY = 20


def write_canonical(path: Path, states: int, seed: int = 0) -> None:
    """Synthetic ScienceWorld-like trajectories: ~300-char observations, 10 admissible actions."""
    from openrlhf_act.schema import Outcome, Step, Trajectory

    rng = random.Random(seed)
    words = [
        "the",
        "a",
        "door",
        "kitchen",
        "hallway",
        "thermometer",
        "beaker",
        "water",
        "substance",
        "orange",
        "box",
        "red",
        "green",
        "living",
        "thing",
    ]
    with open(path, "w", encoding="utf-8") as handle:
        for t in range(states // STEPS_PER_TRAJECTORY):
            steps = []
            for _ in range(STEPS_PER_TRAJECTORY):
                observation = " ".join(rng.choice(words) for _ in range(55))
                actions = tuple(f"{rng.choice(words)} {rng.choice(words)} {j}" for j in range(10))
                steps.append(Step(observation=observation, action=actions[0], admissible=actions, reward=0.0))
            trajectory = Trajectory(
                f"task{t % 30}/v{t}", "scienceworld", "Your task is to boil water.", tuple(steps), Outcome(100, True)
            )
            handle.write(trajectory.to_line() + "\n")


def child(path: str) -> None:
    """Run in a fresh process: stream the file through the pipeline and report rate and peak RSS."""
    import resource

    from data_tools.build import BuildConfig, iter_contrast_rows

    config = BuildConfig(inputs=(path,), input_format="canonical")
    start = time.perf_counter()
    count = sum(1 for _ in iter_contrast_rows(config))
    seconds = time.perf_counter() - start
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"states": count, "seconds": seconds, "rss_kb": rss_kb}))


def measure(path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_ingest", str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool) -> list[BenchResult]:
    small, large = (4_000, 40_000) if quick else (20_000, 200_000)
    with tempfile.TemporaryDirectory() as tmp:
        small_path, large_path = Path(tmp) / "small.jsonl", Path(tmp) / "large.jsonl"
        write_canonical(small_path, small)
        write_canonical(large_path, large)
        a = measure(small_path)
        b = measure(large_path)
    rate = b["states"] / b["seconds"]
    ratio = b["rss_kb"] / a["rss_kb"]
    return [
        at_least(
            "ingest+states+render (canonical)",
            rate,
            20_000,
            "states/s",
            f"{b['states']} states in {b['seconds']:.2f} s, one process",
        ),
        at_most(
            f"peak RSS {large // 1000}k / {small // 1000}k states",
            ratio,
            1.5,
            "ratio",
            f"{b['rss_kb'] / 1024:.0f} MiB vs {a['rss_kb'] / 1024:.0f} MiB",
        ),
    ]


if __name__ == "__main__":
    child(sys.argv[1])
