"""``data replay`` throughput: environment steps replayed per second with 1 and 2 worker processes.

The input is ScienceWorld gold trajectories of the fast tasks (canonical, episodes named in ``meta``),
replayed with the admissible actions listed at every step (what replay records; about half of a step's
cost in the JVM).

* Cold (reported): ``replay()`` end to end, from reading the file to the manifest, JVMs started inside
  the timing (the parent's matching simulator too), 1 worker then 2.
* Warm (the scaling figure): the same replay jobs through an already warmed pool of 1 and one of 2
  workers, alternating rounds; the figure is the median of the rounds' ratios.

Needs scienceworld and Java 17.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import BenchResult


def _gold_file(path: Path, tasks: list[str], per_task: int, *, admissible: bool = False) -> int:
    """Write gold trajectories (canonical) for ``per_task`` train variations of each task, with the
    admissible actions at every step or none (as public data); return how many steps."""
    from openrlhf_act.envs.base import EnvTask
    from openrlhf_act.envs.scienceworld import ScienceWorld
    from openrlhf_act.schema import Step, Trajectory

    lines, steps = [], 0
    with ScienceWorld(gold_path=True, admissible=admissible) as env:
        for task in tasks:
            for variation in env.variations(task, "train")[:per_task]:
                env.load(EnvTask("scienceworld", task, variation))
                current, steps_of = env.reset(), []
                for action in env.expert_actions() or []:
                    steps_of.append(Step(current.observation, action, admissible=current.admissible))
                    current = env.step(action)
                    if current.done:
                        break
                record = Trajectory(
                    f"{task}/v{variation}",
                    "scienceworld",
                    env.task_description,
                    tuple(steps_of),
                    meta={"task_name": task, "variation": variation},
                )
                lines.append(json.dumps(record.to_json()))
                steps += len(steps_of)
    path.write_text("\n".join(lines) + "\n")
    return steps


def _jobs(path: Path):
    from data_tools.episode_match import ScienceWorldMatcher
    from data_tools.readers import read_trajectories
    from data_tools.replay import ReplayJob

    matcher = ScienceWorldMatcher()
    try:
        return [
            ReplayJob(str(i), (match := matcher.match(t)).task, match.how, t)
            for i, t in enumerate(read_trajectories([path]))
        ]
    finally:
        matcher.close()


def _warm_rate(pool, jobs) -> float:
    """Replayed steps per second of one pass of ``jobs`` through ``pool``."""
    from data_tools.replay import _play

    steps = 0

    def on_done(job, result) -> None:
        nonlocal steps
        if "trajectory" not in result:
            raise RuntimeError(f"replay of {job} failed: {result}")
        steps += len(result["trajectory"]["steps"])

    started = time.perf_counter()
    pool.run(jobs, _play, on_done)
    return steps / (time.perf_counter() - started)


def run(quick: bool) -> list[BenchResult]:
    from data_tools.replay import ReplayConfig, replay
    from openrlhf_act.envs.pool import WorkerPool
    from openrlhf_act.envs.scienceworld import FAST_TASKS

    tasks = list(FAST_TASKS[:4] if quick else FAST_TASKS)
    rounds = 1 if quick else 3
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "gold.jsonl"
        steps = _gold_file(source, tasks, 1 if quick else 2)
        cold = {}
        for workers in (1, 2):
            config = ReplayConfig(env="scienceworld", inputs=(str(source),), workers=workers)
            stats = replay(config, Path(tmp) / f"out{workers}.jsonl", progress=False)
            if stats.steps != steps:
                raise RuntimeError(f"replay kept {stats.steps} of {steps} steps: {stats.to_json()}")
            cold[workers] = stats.steps / stats.seconds
        jobs = _jobs(source)
    options = {"simplification": "", "admissible": True}
    with WorkerPool("scienceworld", options, 1) as one, WorkerPool("scienceworld", options, 2) as two:
        for pool in (one, two, two):  # a warm-up pass per worker
            _warm_rate(pool, jobs)
        pairs = [(_warm_rate(one, jobs), _warm_rate(two, jobs)) for _ in range(rounds)]
    ratio = statistics.median(b / a for a, b in pairs)
    note = f"{len(jobs)} trajectories, {steps} steps, admissible actions listed"
    return [
        BenchResult("replay steps/s, 1 worker, cold", cold[1], "steps/s", "-", True, f"end to end; {note}"),
        BenchResult("replay steps/s, 2 workers, cold", cold[2], "steps/s", "-", True, f"{cold[2] / cold[1]:.2f}x 1"),
        BenchResult(
            "replay steps/s, 1 worker, warm",
            statistics.median(a for a, _ in pairs),
            "steps/s",
            "-",
            True,
            f"median of {rounds}",
        ),
        BenchResult(
            "replay steps/s, 2 workers, warm",
            statistics.median(b for _, b in pairs),
            "steps/s",
            "-",
            True,
            f"median of {rounds}",
        ),
        BenchResult("replay, 2 workers vs 1, warm", ratio, "x", "-", True, f"median ratio of {rounds} rounds; {note}"),
    ]
