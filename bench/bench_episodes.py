"""Episode throughput of ``eval episodes`` and how many policy calls it makes.

* Throughput, steady state (the target): the ``expert`` policy plays fast ScienceWorld test episodes
  (``FAST_TASKS``) through a :class:`~openrlhf_act.envs.pool.WorkerPool` of 1 and one of 2 workers.
  Both pools are first warmed by the same number of train episodes per worker (a ScienceWorld JVM
  compiles the Scala simulator for its first few hundred episodes, with its C2 JIT threads on the
  other core), then measured runs alternate between them; the figure is the median of the rounds'
  ratios. Target: 2 workers >= 1.6x the episodes/s of 1 worker. This is the regime of an evaluation
  of a real size (thousands of episodes), and of several runs through one pool.
* The same with each JVM on the serial garbage collector (``jvm_options``; reported, no target).
* Throughput, cold start (reported, no target): the same test episodes from a fresh run, wall time
  including starting the workers and their JVMs. On a 2-core machine one cold JVM's JIT already keeps
  the second core busy (the CPU the environment processes used is printed), so a second worker, which
  compiles everything again, adds little to a run this short.
* Batching: ``N`` = 4 environments play one episode each of variations whose gold paths have the same
  length, so all N episodes are active on every round; an unbatched harness calls the policy once per
  environment step, ours once per round: target calls / steps <= 1/N. The 2-worker run's ratio is
  reported too (episodes start and end at different times, so it lies between 1/2 and 1).

Needs scienceworld and Java 17; the figures are sensitive to other load on the machine.
"""

from __future__ import annotations

import resource
import statistics
import tempfile
import time

from bench.common import BenchResult, at_least, at_most

BATCH_ENVS = 4
SERIAL_GC = "-XX:+UseSerialGC"  # no concurrent GC threads competing with the other worker's simulator
UNIFORM_TASK = "lifespan-longest-lived"


def _runner(tasks, out, options=None, **kwargs):
    from openrlhf_act.envs.registry import expert_options
    from openrlhf_act.eval.episodes import EpisodeRunner
    from openrlhf_act.eval.policies import ExpertPolicy

    options = expert_options("scienceworld") if options is None else options
    return EpisodeRunner("scienceworld", tasks, ExpertPolicy(), out, env_options=options, progress=False, **kwargs)


def _checked(runner):
    summary = runner.run()
    if summary["errors"] or any(s["micro"]["success_rate"] != 100.0 for s in summary["splits"].values()):
        raise RuntimeError(f"the expert did not win every episode: {summary['splits']}")
    return runner.stats


def _cold(tasks, workers: int):
    """Episodes/s of a fresh run (workers and JVMs started inside the timing), and the cores the
    environment processes used."""
    with tempfile.TemporaryDirectory() as out:
        runner = _runner(tasks, out, workers=workers)
        started = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        stats = _checked(runner)
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cores = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / seconds
    return stats, len(tasks) / seconds, cores


def _through(pool, tasks) -> float:
    """Episodes/s of one run through ``pool``."""
    with tempfile.TemporaryDirectory() as out:
        runner = _runner(tasks, out, pool.options, pool=pool)
        started = time.perf_counter()
        _checked(runner)
        return len(tasks) / (time.perf_counter() - started)


def _steady(warm, tasks, warm_runs: int, rounds: int, **jvm) -> tuple[list[float], list[float]]:
    """Episodes/s of 1 and of 2 warmed workers, measured in alternating rounds (``jvm``: adapter
    options such as ``jvm_options``)."""
    from openrlhf_act.envs.pool import WorkerPool
    from openrlhf_act.envs.registry import expert_options

    options = {**expert_options("scienceworld"), **jvm}
    with WorkerPool("scienceworld", options, 1) as one, WorkerPool("scienceworld", options, 2) as two:
        for pool in (one, two):  # the same number of warm-up episodes per worker
            for _ in range(warm_runs * len(pool.workers)):
                _through(pool, warm)
        rates_one, rates_two = [], []
        for _ in range(rounds):
            rates_one.append(_through(one, tasks))
            rates_two.append(_through(two, tasks))
    return rates_one, rates_two


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

    tasks = resolve_episodes("scienceworld", split="test", tasks=list(FAST_TASKS), episodes=2 if quick else 6)
    warm = resolve_episodes("scienceworld", split="train", tasks=list(FAST_TASKS), episodes=5)
    warm_runs, rounds = (1, 1) if quick else (4, 3)
    _, cold_one, cores_one = _cold(tasks, 1)
    two, cold_two, cores_two = _cold(tasks, 2)
    rates_one, rates_two = _steady(warm, tasks, warm_runs, rounds)
    ratios = [b / a for a, b in zip(rates_one, rates_two)]
    serial_one, serial_two = _steady(warm, tasks, warm_runs, rounds, jvm_options=SERIAL_GC)
    serial = [b / a for a, b in zip(serial_one, serial_two)]
    same_length = equal_length_variations(UNIFORM_TASK, BATCH_ENVS)
    uniform = resolve_episodes("scienceworld", split="test", tasks=[UNIFORM_TASK], variations=same_length)
    with tempfile.TemporaryDirectory() as out:
        batched = _checked(_runner(uniform, out, workers=BATCH_ENVS))
    warmed = f"{len(warm) * warm_runs} warm-up episodes per worker; {len(tasks)} episodes per round"
    return [
        BenchResult(
            "episodes/s, expert, 1 worker, warm",
            statistics.median(rates_one),
            "ep/s",
            "-",
            True,
            f"median of {rounds} rounds; {warmed}",
        ),
        BenchResult(
            "episodes/s, expert, 2 workers, warm",
            statistics.median(rates_two),
            "ep/s",
            "-",
            True,
            f"median of {rounds} rounds; {warmed}",
        ),
        at_least(
            "speed-up 2 workers vs 1, warm",
            statistics.median(ratios),
            1.6,
            "x",
            "median of rounds " + ", ".join(f"{r:.2f}" for r in ratios),
        ),
        BenchResult(
            "speed-up 2 workers vs 1, warm, serial GC",
            statistics.median(serial),
            "x",
            "-",
            True,
            f"--env-option jvm_options={SERIAL_GC}; {statistics.median(serial_one):.2f} vs "
            f"{statistics.median(serial_two):.2f} ep/s; rounds " + ", ".join(f"{r:.2f}" for r in serial),
        ),
        BenchResult(
            "speed-up 2 workers vs 1, cold start",
            cold_two / cold_one,
            "x",
            "-",
            True,
            f"{cold_one:.2f} vs {cold_two:.2f} ep/s incl. worker + JVM start; environment processes used "
            f"{cores_one:.2f} and {cores_two:.2f} cores",
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
            f"{two.policy_calls} calls for {two.env_steps} steps (cold run); unbatched: 1 per step",
        ),
    ]
