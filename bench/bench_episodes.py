"""Episode throughput of ``eval episodes`` and how many policy calls it makes.

* Throughput: the ``expert`` policy plays fast ScienceWorld test episodes (``FAST_TASKS``) with 1 and
  with 2 environment workers; target: 2 workers >= 1.6x the episodes/s of 1 worker. Wall time includes
  starting the workers and their JVMs, as a user's run does.
* Batching: ``N`` = 4 environments play one episode each of variations whose gold paths have the same
  length, so all N episodes are active on every round; an unbatched harness calls the policy once per
  environment step, ours once per round: target calls / steps <= 1/N. The 2-worker mixed run's ratio is
  reported too (episodes of different lengths leave some rounds with fewer episodes, so it lies between
  1/2 and 1: a round never holds more episodes than are running).

Needs scienceworld and Java 17; the figures are sensitive to other load on the machine. The CPU the
environment processes used is reported with each run: one ScienceWorld JVM keeps more than one core busy
(its C2 JIT compiler threads compile the Scala simulator for most of a run of this size), which caps
what a second worker can add on a 2-core machine.
"""

from __future__ import annotations

import resource
import tempfile
import time

from bench.common import BenchResult, at_least, at_most

BATCH_ENVS = 4
UNIFORM_TASK = "lifespan-longest-lived"


def _play(tasks, workers: int):
    from openrlhf_act.envs.registry import expert_options
    from openrlhf_act.eval.episodes import EpisodeRunner
    from openrlhf_act.eval.policies import ExpertPolicy

    with tempfile.TemporaryDirectory() as out:
        runner = EpisodeRunner(
            "scienceworld",
            tasks,
            ExpertPolicy(),
            out,
            workers=workers,
            env_options=expert_options("scienceworld"),
            progress=False,
        )
        started = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        summary = runner.run()
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cores = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / seconds
    if summary["errors"] or summary["splits"]["test"]["micro"]["success_rate"] != 100.0:
        raise RuntimeError(f"the expert did not win every episode: {summary['splits']}")
    return runner.stats, seconds, cores


def equal_length_variations(task: str, count: int) -> list[int]:
    """``count`` test variations of ``task`` whose gold paths have the same length."""
    from openrlhf_act.envs.base import EnvTask
    from openrlhf_act.envs.registry import make_env

    by_length: dict[int, list[int]] = {}
    with make_env("scienceworld", gold_path=True) as env:
        for variation in env.variations(task, "test")[: 8 * count]:
            env.load(EnvTask("scienceworld", task, variation))
            env.reset()
            by_length.setdefault(len(env.expert_actions() or ()), []).append(variation)
            if len(by_length[len(env.expert_actions() or ())]) == count:
                break
    return max(by_length.values(), key=len)[:count]


def run(quick: bool) -> list[BenchResult]:
    from openrlhf_act.envs.registry import resolve_episodes
    from openrlhf_act.envs.scienceworld import FAST_TASKS

    per_task = 1 if quick else 3
    tasks = resolve_episodes("scienceworld", split="test", tasks=list(FAST_TASKS), episodes=per_task)
    _, one_s, one_cores = _play(tasks, 1)
    two, two_s, two_cores = _play(tasks, 2)
    rate_one, rate_two = len(tasks) / one_s, len(tasks) / two_s
    same_length = equal_length_variations(UNIFORM_TASK, BATCH_ENVS)
    uniform = resolve_episodes("scienceworld", split="test", tasks=[UNIFORM_TASK], variations=same_length)
    batched, _, _ = _play(uniform, BATCH_ENVS)
    return [
        BenchResult(
            "episodes/s, expert, 1 worker",
            rate_one,
            "ep/s",
            "-",
            True,
            f"{len(tasks)} episodes; environment processes used {one_cores:.2f} cores",
        ),
        BenchResult(
            "episodes/s, expert, 2 workers",
            rate_two,
            "ep/s",
            "-",
            True,
            f"{len(tasks)} episodes; environment processes used {two_cores:.2f} cores",
        ),
        at_least(
            "speed-up 2 workers vs 1",
            rate_two / rate_one,
            1.6,
            "x",
            f"wall time incl. worker + JVM start; 1 worker already keeps {one_cores:.2f} of 2 cores busy",
        ),
        at_most(
            f"policy calls per env step, N={BATCH_ENVS} envs",
            batched.policy_calls / batched.env_steps,
            1 / BATCH_ENVS,
            "calls",
            f"{batched.policy_calls} calls for {batched.env_steps} steps ({UNIFORM_TASK}); unbatched: 1 per step",
        ),
        at_most(
            "policy calls per env step, 2 workers, mixed tasks",
            two.policy_calls / two.env_steps,
            1.0,
            "calls",
            f"{two.policy_calls} calls for {two.env_steps} steps; unbatched: 1 per step",
        ),
    ]
