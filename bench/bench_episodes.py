"""Episode throughput of ``eval episodes``, its floor (ScienceWorld alone), the JVM's GC by worker count, and how
many policy calls it makes.

* Throughput, steady state: the ``expert`` policy plays fast ScienceWorld test episodes (``FAST_TASKS``)
  through a :class:`~openrlhf_act.envs.pool.WorkerPool` of 1 and one of 2 workers, each with the JVM's default
  GC and with the serial GC (``jvm_options``). Every pool is first warmed by the same number of train episodes
  per worker (a ScienceWorld JVM compiles the Scala simulator for its first few hundred episodes, with its C2
  JIT threads on the other core), then, after one discarded round, measured runs alternate between them, round
  after round (in reverse order every other round); figures are medians over the rounds, ratios the medians of
  the rounds' ratios, each with the CPU its workers and JVMs used per episode.
  The main rows use the GC the pool picks by default (:func:`~openrlhf_act.envs.scienceworld.default_jvm_options`:
  serial once the workers fill the cores); the GC rows check that this pick is the faster one at each worker
  count. Target: 2 workers >= 1.6x the episodes/s of 1 worker.
* The harness's floor: the same episodes played by the ``scienceworld`` package called directly in this process
  (no harness: ``load`` with the gold path, then ``look around`` and every gold action with the calls the
  adapter makes per step, ``step`` + ``getScore`` + ``getCompleted``), its JVM warmed alike and measured in
  alternating rounds with a 1-worker pool, these the only simulators alive (other JVMs' leftover JIT work
  would tilt it). Its JVM gets the flags the worker's gets (the GC pick and the adapter's
  ``REPRODUCIBLE_JVM_FLAGS``), so the ratio is the harness's own cost; a third simulator on the JVM's defaults
  shows what the reproducible flags cost (reported). Target: ``eval episodes`` with 1 worker >= 0.85x the bare
  loop.
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

import contextlib
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator

from bench.common import BenchResult, at_least, at_most, cpu_seconds

BATCH_ENVS = 4
UNIFORM_TASK = "lifespan-longest-lived"
JVM_DEFAULT = ""  # an explicit empty jvm_options: the JVM's own default GC, whatever the worker count
Player = tuple[Callable[[list], None], Callable[[], list[int]]]  # plays episodes; the pids of its simulators


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


def _through(pool, tasks) -> None:
    """One ``eval episodes`` run through ``pool``."""
    with tempfile.TemporaryDirectory() as out:
        _checked(_runner(tasks, out, pool.options, pool=pool))


@contextlib.contextmanager
def _java_tool_options(flags: str) -> Iterator[None]:
    """``JAVA_TOOL_OPTIONS`` for a JVM started meanwhile (the bare loop's: the flags a 1-worker pool uses)."""
    before = os.environ.get("JAVA_TOOL_OPTIONS")
    if flags:
        os.environ["JAVA_TOOL_OPTIONS"] = flags
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("JAVA_TOOL_OPTIONS", None)
        else:
            os.environ["JAVA_TOOL_OPTIONS"] = before


def _bare(env, tasks) -> None:
    """The episodes played by the ``scienceworld`` package directly: the floor of any harness."""
    for task in tasks:
        env.load(task.name, task.variation, "", True)
        server = env.server
        for action in ["look around", *env.get_gold_action_sequence()]:
            server.step(action)
            score, done = server.getScore(), server.getCompleted()
            if done:
                break
        if round(100 * score) != 100:
            raise RuntimeError(f"the bare loop did not win {task.name} variation {task.variation}: score {score}")


def _rounds(players: dict[str, Player], episodes: int, tasks, rounds: int) -> dict[str, dict[str, list[float]]]:
    """Per player and round: episodes/s, and the CPU its simulators' processes (Python and JVM) used per episode.
    The order alternates so drift (JIT, other load) hits all alike."""
    figures: dict[str, dict[str, list[float]]] = {name: {"rate": [], "cpu_ms": []} for name in players}
    for index in range(rounds):
        for name in list(players)[:: 1 if index % 2 == 0 else -1]:
            play, pids = players[name]
            cpu_before = sum(map(cpu_seconds, pids()))
            started = time.perf_counter()
            play(tasks)
            figures[name]["rate"].append(episodes / (time.perf_counter() - started))
            figures[name]["cpu_ms"].append((sum(map(cpu_seconds, pids())) - cpu_before) / episodes * 1000)
    return figures


def _steady(warm, tasks, warm_runs: int, rounds: int, names: list[str]) -> dict[str, dict[str, list[float]]]:
    """Episodes/s and CPU per episode, per round, of the players ``names`` (``bare``, or a pool as ``SIZE:GC``:
    1 or 2 workers, ``default`` or ``serial`` GC), all alive at once and no other simulator."""
    from scienceworld import ScienceWorldEnv

    from openrlhf_act.envs.pool import WorkerPool
    from openrlhf_act.envs.registry import expert_options
    from openrlhf_act.envs.scienceworld import REPRODUCIBLE_JVM_FLAGS, SERIAL_GC, ScienceWorld

    options = expert_options("scienceworld")
    flags = {"default": JVM_DEFAULT, "serial": SERIAL_GC}
    with contextlib.ExitStack() as stack:
        pools = {
            name: stack.enter_context(
                WorkerPool("scienceworld", {**options, "jvm_options": flags[name[2:]]}, int(name[0]))
            )
            for name in names
            if not name.startswith("bare")
        }
        players: dict[str, Player] = {
            name: (
                (lambda t, p=pool: _through(p, t)),
                (lambda p=pool: [pid for w in p.workers for pid in (w.pid, *w.child_pids)]),
            )
            for name, pool in pools.items()
        }
        # The bare loop's JVM: the flags a 1-worker pool's adapter starts its JVM with (``bare``), or none.
        same = " ".join([*REPRODUCIBLE_JVM_FLAGS, ScienceWorld.worker_options({}, 1)["jvm_options"]])
        for name, jvm_flags in (("bare", same), ("bare:plain", "")):
            if name in names:
                with _java_tool_options(jvm_flags.strip()):
                    env = ScienceWorldEnv("", envStepLimit=10_000)
                stack.callback(env.close)
                players[name] = (
                    (lambda t, e=env: _bare(e, t)),
                    (lambda e=env: [os.getpid(), e._gateway.java_process.pid]),
                )
        for name, (play, _) in players.items():  # the same number of warm-up episodes per simulator
            for _ in range(warm_runs * (len(pools[name].workers) if name in pools else 1)):
                play(warm)
        _rounds(players, len(tasks), tasks, 1)  # discarded: the JIT work left over from the warm-ups settles
        return _rounds(players, len(tasks), tasks, rounds)


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


def _ratio(figures: dict[str, dict[str, list[float]]], top: str, bottom: str, key: str = "rate") -> tuple[float, str]:
    ratios = [a / b for a, b in zip(figures[top][key], figures[bottom][key])]
    return statistics.median(ratios), ", ".join(f"{r:.2f}" for r in ratios)


def _gc_rows(figures: dict[str, dict[str, list[float]]], picked: dict[int, str], cores: int) -> list[BenchResult]:
    """For 1 and 2 workers: the pool's GC pick against the other GC, throughput (target: the pick is the faster)
    and CPU per episode (which decides throughput once the workers keep every core busy)."""
    rows = []
    for size in (1, 2):
        other = "serial" if picked[size] == "default" else "default"
        ratio, each = _ratio(figures, f"{size}:{picked[size]}", f"{size}:{other}")
        cpu = {gc: statistics.median(figures[f"{size}:{gc}"]["cpu_ms"]) for gc in ("default", "serial")}
        rate = {gc: statistics.median(figures[f"{size}:{gc}"]["rate"]) for gc in ("default", "serial")}
        rows.append(
            at_least(
                f"episodes/s, the pool's GC pick / the other GC, {size} worker{'s' * (size > 1)} on {cores} cores",
                ratio,
                1.0,
                "x",
                f"picked: {picked[size]}; episodes/s default (G1) {rate['default']:.2f}, serial {rate['serial']:.2f}; "
                f"CPU per episode (workers + JVMs) default {cpu['default']:.0f} ms, serial {cpu['serial']:.0f} ms; "
                f"rounds {each}",
            )
        )
    return rows


def run(quick: bool) -> list[BenchResult]:
    from openrlhf_act.envs.registry import resolve_episodes
    from openrlhf_act.envs.scienceworld import FAST_TASKS, REPRODUCIBLE_JVM_FLAGS, ScienceWorld, usable_cores

    tasks = resolve_episodes("scienceworld", split="test", tasks=list(FAST_TASKS), episodes=2 if quick else 6)
    warm = resolve_episodes("scienceworld", split="train", tasks=list(FAST_TASKS), episodes=5)
    warm_runs, rounds = (1, 3) if quick else (4, 5)
    _, cold_one, cores_one = _cold(tasks, 1)
    two, cold_two, cores_two = _cold(tasks, 2)
    picked = {size: "serial" if ScienceWorld.worker_options({}, size)["jvm_options"] else "default" for size in (1, 2)}
    one, pair = f"1:{picked[1]}", f"2:{picked[2]}"
    # The floor with only its two simulators alive, warmed longer (a JVM still compiling is no floor); then every
    # pool size with every GC, alive together.
    figures = _steady(warm, tasks, warm_runs + 2, rounds, [one, "bare", "bare:plain"])
    floor, floors = _ratio(figures, one, "bare")
    flags_cost, flags_costs = _ratio(figures, "bare", "bare:plain")
    figures = {"bare": figures["bare"], "bare:plain": figures["bare:plain"], "1:floor": figures[one]}
    figures |= _steady(warm, tasks, warm_runs, rounds, ["1:default", "1:serial", "2:default", "2:serial"])
    rates = {name: figure["rate"] for name, figure in figures.items()}
    speed_up, speed_ups = _ratio(figures, pair, one)
    same_length = equal_length_variations(UNIFORM_TASK, BATCH_ENVS)
    uniform = resolve_episodes("scienceworld", split="test", tasks=[UNIFORM_TASK], variations=same_length)
    with tempfile.TemporaryDirectory() as out:
        batched = _checked(_runner(uniform, out, workers=BATCH_ENVS))
    warmed = f"{len(warm) * warm_runs} warm-up episodes per simulator; {len(tasks)} episodes per round"
    return [
        BenchResult(
            "episodes/s, expert, 1 worker, warm",
            statistics.median(rates[one]),
            "ep/s",
            "-",
            True,
            f"{picked[1]} GC (the pool's pick); median of {rounds} rounds; {warmed}",
        ),
        BenchResult(
            "episodes/s, bare ScienceWorld loop (no harness), warm",
            statistics.median(rates["bare"]),
            "ep/s",
            "-",
            True,
            f"the scienceworld package called directly: same episodes, gold actions, JVM flags as the worker's; "
            f"median of {rounds} rounds",
        ),
        at_least(
            "eval episodes (1 worker) / bare ScienceWorld loop, warm",
            floor,
            0.85,
            "x",
            f"{len(warm) * (warm_runs + 2)} warm-up episodes each; median of rounds {floors}; CPU per episode: "
            "harness's worker + JVM "
            f"{statistics.median(figures['1:floor']['cpu_ms']):.0f} ms, bare loop's process + JVM "
            f"{statistics.median(figures['bare']['cpu_ms']):.0f} ms",
        ),
        BenchResult(
            "bare ScienceWorld loop, reproducible JVM flags / none",
            flags_cost,
            "x",
            "-",
            True,
            f"the adapter's {' '.join(REPRODUCIBLE_JVM_FLAGS)} (reproducible episodes; in the floor above), against "
            f"the JVM's defaults: {statistics.median(rates['bare:plain']):.2f} episodes/s; rounds {flags_costs}",
        ),
        BenchResult(
            "episodes/s, expert, 2 workers, warm",
            statistics.median(rates[pair]),
            "ep/s",
            "-",
            True,
            f"{picked[2]} GC (the pool's pick); median of {rounds} rounds; {warmed}",
        ),
        at_least(
            "speed-up 2 workers vs 1, warm",
            speed_up,
            1.6,
            "x",
            f"the pool's GC pick for each; median of rounds {speed_ups}",
        ),
        *_gc_rows(figures, picked, usable_cores()),
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
