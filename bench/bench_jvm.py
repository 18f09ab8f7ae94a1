"""ScienceWorld steps/s: several simulators in one JVM vs one JVM per process (issue: scaling).

Designs, each in its own worker processes (spawned), all alive for the whole run:

* (a) 1 process, 1 JVM, 1 simulator: the baseline of every ratio;
* (b) 2 processes, 2 JVMs, 1 simulator each: the project's :class:`~openrlhf_act.envs.pool.WorkerPool`;
* (c) 1 process, 1 JVM hosting 2 simulators (two ``PythonInterface`` objects through one py4j gateway),
  each driven by its own Python thread (py4j gives each thread its own connection): one JIT;
* (d) design (b) with the serial GC (``-XX:+UseSerialGC``: no concurrent GC threads on the other core);
  C1 only (``-XX:TieredStopAtLevel=1``) was measured once and dropped (``C1_ONLY``, far slower).

Every simulator plays the gold paths of ``FAST_TASKS`` in a loop, with lean steps as the adapter makes
them (``step`` + ``getScore`` + ``getCompleted``; ``load`` with the gold path included in the timing).
Each simulator first plays one warm-up pass (one episode of every task); then measured windows of the
same length alternate between the designs, round after round (in reverse order every other round), so
drift (JIT, other load) hits all of them alike. Figures: steps/s of all simulators of a design together
per window, and the median over rounds of its ratio against (a) in the same round; the cores its
processes (Python + JVM) used; its cold start (spawn until the simulators exist, and the warm-up pass).
``idle`` is the CPU that the designs not being measured used during a window (JIT compilation left
over), which the measured design had to share; ``other`` the CPU of everything else on the machine
(other users). ``lost`` counts episodes that did not reach score 100 or failed (a shared JVM's
simulators corrupt each other: see ``tests/test_scienceworld_jvm.py``).

Needs scienceworld and Java 17; the figures are sensitive to other load on the machine.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass

from bench.common import BenchResult

VARIATIONS = (1, 2, 3)
WARM_EPISODES = 8  # per simulator: one episode of every fast task
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Design:
    key: str
    label: str
    processes: int
    simulators: int  # per process (= per JVM)
    javaopts: tuple[str, ...] = ()


DESIGNS = (
    Design("a", "1 process, 1 JVM, 1 sim", 1, 1),
    Design("b", "2 processes, 2 JVMs", 2, 1),
    Design("c", "1 process, 1 JVM, 2 sims/threads", 1, 2),
    Design("d", "2 processes, serial GC", 2, 1, ("-XX:+UseSerialGC",)),
)
# Measured once and left out (cheap to put back): C1 only, far less compile work but slower code, ran at
# 0.27-0.29x of (a) with 2 processes, steadily worse as the C2-compiled designs warmed up.
C1_ONLY = Design("c1", "2 processes, C1 only", 2, 1, ("-XX:TieredStopAtLevel=1",))


def episodes_for(simulator: int) -> list[tuple[str, int]]:
    """The episode cycle of one simulator: every fast task, rotated so simulators differ."""
    from openrlhf_act.envs.scienceworld import FAST_TASKS

    out = [(task, variation) for variation in VARIATIONS for task in FAST_TASKS]
    shift = (simulator * len(FAST_TASKS) // 2) % len(out)
    return out[shift:] + out[:shift]


def launch_jvm(javaopts: tuple[str, ...] = ()):
    """A ScienceWorld JVM behind a py4j gateway, as ``ScienceWorldEnv`` starts it (plus ``javaopts``)."""
    from py4j.java_gateway import GatewayParameters, JavaGateway, launch_gateway
    from scienceworld.constants import BASEPATH, JAR_PATH

    port, proc = launch_gateway(
        classpath=JAR_PATH, die_on_exit=True, cwd=BASEPATH, return_proc=True, javaopts=list(javaopts)
    )
    return JavaGateway(gateway_parameters=GatewayParameters(auto_field=True, port=port), java_process=proc)


def new_simulator(gateway):
    return gateway.jvm.scienceworld.runtime.pythonapi.PythonInterface()


def play_gold(sim, task: str, variation: int, deadline: float | None = None) -> tuple[int, bool]:
    """One gold-path episode with lean steps (the adapter's reset looks around first): steps, won."""
    sim.load(task, variation, "", True)
    actions = ["look around"] + [str(a) for a in sim.getGoldActionSequence()]
    steps, score, done = 0, 0, False
    for action in actions:
        if deadline is not None and time.perf_counter() >= deadline:
            return steps, True  # cut by the window, not lost
        sim.step(action)
        score = round(100 * sim.getScore())
        done = bool(sim.getCompleted())
        steps += 1
    return steps, done and score >= 100


def busy_cores_seconds() -> float:
    """CPU seconds all processes of the machine used so far (/proc/stat), 0 when unknown."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        return (sum(fields) - fields[3] - fields[4]) / CLK_TCK  # all but idle and iowait
    except (OSError, ValueError, IndexError):
        return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` (Linux /proc), 0 when unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def _drive(sim, cycle, positions: list[int], i: int, deadline: float | None, results: list) -> None:
    """Simulator ``i`` plays its cycle until ``deadline``, or one warm-up pass: steps, episodes, episodes
    that did not reach score 100, episodes that raised (and the first error)."""
    steps = episodes = lost = errors = 0
    first_error = ""
    while True:
        if deadline is None and episodes == WARM_EPISODES:
            break  # the warm-up pass
        if deadline is not None and time.perf_counter() >= deadline:
            break
        task, variation = cycle[positions[i] % len(cycle)]
        positions[i] += 1
        episodes += 1
        try:
            n, won = play_gold(sim, task, variation, deadline)
        except Exception as exc:  # a broken simulator: count it, go on with the next episode
            errors += 1
            first_error = first_error or f"{task} {variation}: {type(exc).__name__}: {str(exc)[:200]}"
            continue
        steps, lost = steps + n, lost + (not won)
        if not won:
            first_error = first_error or f"{task} {variation}: gold path did not win"
    results[i] = (steps, episodes, lost, errors, first_error)


def _serve(conn, simulators: int, javaopts: tuple[str, ...], first: int) -> None:
    """A worker process: one JVM with ``simulators`` simulators, one thread each per ``play``."""
    started = time.perf_counter()
    gateway = launch_jvm(javaopts)
    sims = [new_simulator(gateway) for _ in range(simulators)]
    cycles = [episodes_for(first + i) for i in range(simulators)]
    positions = [0] * simulators
    conn.send((gateway.java_process.pid, time.perf_counter() - started))
    try:
        while True:
            command, seconds = conn.recv()
            if command == "close":
                return
            results: list = [None] * simulators
            deadline = None if seconds is None else time.perf_counter() + seconds

            t0, cpu0 = time.perf_counter(), time.process_time() + cpu_seconds(gateway.java_process.pid)
            threads = [
                threading.Thread(target=_drive, args=(sims[i], cycles[i], positions, i, deadline, results))
                for i in range(simulators)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - t0
            cpu = time.process_time() + cpu_seconds(gateway.java_process.pid) - cpu0
            conn.send((results, elapsed, cpu))
    finally:
        gateway.shutdown()
        proc = gateway.java_process
        if proc.poll() is None:
            proc.stdin.write(b"\n")
            proc.stdin.flush()
            try:
                proc.wait(timeout=5)
            except Exception:
                proc.kill()


class Pool:
    """The worker processes of one design."""

    def __init__(self, design: Design):
        ctx = multiprocessing.get_context("spawn")
        self.design = design
        self.conns, self.processes = [], []
        started = time.perf_counter()
        for p in range(design.processes):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(child, design.simulators, design.javaopts, p), daemon=True)
            proc.start()
            child.close()  # so that a crashed worker reads as EOF here
            self.conns.append(parent)
            self.processes.append(proc)
        self.java_pids = [conn.recv()[0] for conn in self.conns]
        self.ready_s = time.perf_counter() - started
        self.first_pass_s = float("nan")
        self.errors: list[str] = []
        self.episodes = 0  # played (or begun, in a window), warm-up pass included

    def play(self, seconds: float | None) -> tuple[int, int, float, float]:
        """Steps, lost episodes (not won or failed), wall seconds, CPU seconds of all processes (one
        window, or the warm-up pass); failures are kept in ``self.errors``."""
        for conn in self.conns:
            conn.send(("play", seconds))
        answers = [conn.recv() for conn in self.conns]
        rows = [r for results, _, _ in answers for r in results]
        self.errors += [r[4] for r in rows if r[4]]
        lost = sum(r[2] + r[3] for r in rows)
        self.episodes += sum(r[1] for r in rows)
        return sum(r[0] for r in rows), lost, max(a[1] for a in answers), sum(a[2] for a in answers)

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes] + self.java_pids

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(("close", None))
        for proc in self.processes:
            proc.join(timeout=15)
            if proc.is_alive():
                proc.kill()


def measure(designs=DESIGNS, rounds: int = 3, window: float = 5.0) -> dict:
    """Per design: cold start, then per round steps/s, cores used, and idle CPU of the others."""
    pools: dict[str, Pool] = {}
    out: dict[str, dict] = {}
    try:
        for design in designs:  # cold start, one design at a time
            print(f"jvm: starting ({design.key}) {design.label}", file=sys.stderr, flush=True)
            pool = Pool(design)
            t0 = time.perf_counter()
            _, lost, _, _ = pool.play(None)
            pool.first_pass_s = time.perf_counter() - t0
            pools[design.key] = pool
            out[design.key] = {"design": design, "rates": [], "cores": [], "idle": [], "foreign": [], "lost": lost}
            out[design.key]["ready_s"], out[design.key]["first_pass_s"] = pool.ready_s, pool.first_pass_s
        for n in range(rounds):
            print(f"jvm: round {n + 1}/{rounds}", file=sys.stderr, flush=True)
            for design in designs if n % 2 == 0 else designs[::-1]:  # no design always first
                others = [pid for key, p in pools.items() if key != design.key for pid in p.pids()]
                idle0, busy0 = sum(cpu_seconds(pid) for pid in others), busy_cores_seconds()
                steps, lost, wall, cpu = pools[design.key].play(window)
                idle = sum(cpu_seconds(pid) for pid in others) - idle0
                foreign = busy_cores_seconds() - busy0 - idle - cpu
                row = out[design.key]
                row["rates"].append(steps / wall)
                row["cores"].append(cpu / wall)
                row["idle"].append(idle / wall)
                row["foreign"].append(max(0.0, foreign / wall))
                row["lost"] += lost
    finally:
        for key, pool in pools.items():
            if key in out:
                out[key]["errors"], out[key]["episodes"] = pool.errors, pool.episodes
            pool.close()
    base = out[designs[0].key]["rates"]
    for row in out.values():
        row["ratios"] = [r / b if b else float("nan") for r, b in zip(row["rates"], base)]
    return out


def med(values: list[float]) -> float:
    """Median of the defined values (a window where the baseline made no step has no ratio)."""
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def table(results: dict) -> str:
    lines = [
        f"{'design':<38} {'steps/s':>8} {'x (a)':>6} {'rounds x (a)':<18} {'cores':>5} {'idle':>5} {'other':>5}"
        f" {'ready s':>7} {'1st pass s':>10} {'lost/episodes':>13}"
    ]
    for key, row in results.items():
        d = row["design"]
        lines.append(
            f"({key}) {d.label:<34} {med(row['rates']):>8.1f} {med(row['ratios']):>6.2f}"
            f" {', '.join(f'{r:.2f}' for r in row['ratios']):<18} {med(row['cores']):>5.2f}"
            f" {max(row['idle']):>5.2f} {med(row['foreign']):>5.2f}"
            f" {row['ready_s']:>7.2f} {row['first_pass_s']:>10.2f} {str(row['lost']) + '/' + str(row['episodes']):>13}"
        )
    return "\n".join(lines)


def run(quick: bool) -> list[BenchResult]:
    rounds, window = (2, 2.0) if quick else (6, 4.0)
    results = measure(DESIGNS, rounds, window)
    print(table(results), file=sys.stderr, flush=True)
    for key, row in results.items():
        for error in row.get("errors", [])[:3]:
            print(f"({key}) lost: {error}", file=sys.stderr, flush=True)
    out = []
    for key, row in results.items():
        d = row["design"]
        out.append(
            BenchResult(
                f"jvm ({key}) {d.label}, steps/s",
                med(row["rates"]),
                "steps/s",
                "-",
                row["lost"] == 0,
                f"x{med(row['ratios']):.2f} vs (a) (rounds "
                + ", ".join(f"{r:.2f}" for r in row["ratios"])
                + f"); {med(row['cores']):.2f} cores; cold: ready {row['ready_s']:.1f} s, "
                f"warm-up pass {row['first_pass_s']:.1f} s; lost episodes {row['lost']} of {row['episodes']}",
            )
        )
    shared = [c / b if b else float("nan") for b, c in zip(results["b"]["rates"], results["c"]["rates"])]
    print("jvm: (c) / (b) per round: " + ", ".join(f"{r:.2f}" for r in shared), file=sys.stderr, flush=True)
    out.append(
        BenchResult(
            "jvm: shared JVM (c) vs 2 processes (b)",
            med(shared),
            "x",
            "-",
            True,
            "median of the rounds' ratios "
            + ", ".join(f"{r:.2f}" for r in shared)
            + "; >= 1.10 in two runs would favour one JVM per pool, if its simulators were independent",
        )
    )
    return out


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for result in run("--quick" in sys.argv):
        print(result)
