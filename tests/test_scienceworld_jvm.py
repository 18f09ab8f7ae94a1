"""Are several ScienceWorld simulators in one JVM independent? (Why the pool keeps one JVM per process.)

Two ``PythonInterface`` objects behind one py4j gateway are two simulators in one JVM. They are not
independent: the simulator keeps JVM-wide state in Scala objects, e.g. ``util.UniqueIdentifier`` (the
object-id counter, reset by every ``load``) and ``scala.util.Random`` (seeded with the variation by every
``load`` and drawn from while worlds are built), which concurrent loads would interleave; and with the JVM's
default identity hash codes, which order a world's hash sets, one simulator's objects advance the hash sequence
the other's worlds are ordered by. So one simulator's ``load`` and steps change what another one plays, even
when the two are driven one call at a time from a single thread. The control shows the same episodes are
reproducible in fresh JVMs, so the difference comes from the sharing. (The adapter's JVM starts with constant
identity hashes, with which these interleaved episodes, and 3 other pairs measured once, play as they do alone;
and one simulator per JVM plays an episode the same after any other: tests/test_reproducible_episodes.py.)
"""

from __future__ import annotations

import pytest

from tests.conftest import requires_scienceworld

pytestmark = [pytest.mark.slow, requires_scienceworld]

FIRST = ("find-living-thing", 3)
SECOND = ("lifespan-longest-lived", 5)


def _transcripts(*episodes: tuple[str, int]) -> list[list[tuple[str, int, bool]]]:
    """Play each episode's gold path in one fresh JVM, one simulator per episode, steps interleaved
    round-robin from this thread: per episode the (observation, score, completed) of every step. The JVM starts
    as the package starts it, with the JVM's default identity hash codes."""
    from bench.bench_jvm import launch_jvm, new_simulator

    gateway = launch_jvm()
    try:
        sims = [new_simulator(gateway) for _ in episodes]
        paths = []
        for sim, (task, variation) in zip(sims, episodes):
            sim.load(task, variation, "", True)
            paths.append(["look around"] + [str(a) for a in sim.getGoldActionSequence()])
        out: list[list[tuple[str, int, bool]]] = [[] for _ in episodes]
        for i in range(max(map(len, paths))):
            for k, (sim, path) in enumerate(zip(sims, paths)):
                if i < len(path):
                    observation = str(sim.step(path[i]))
                    out[k].append((observation, round(100 * sim.getScore()), bool(sim.getCompleted())))
        return out
    finally:
        gateway.shutdown()
        proc = gateway.java_process
        if proc.poll() is None:
            proc.stdin.write(b"\n")
            proc.stdin.flush()
        proc.wait(timeout=10)


def test_episodes_are_reproducible_in_fresh_jvms():
    """Control: the same episode alone in two fresh JVMs plays exactly the same."""
    assert _transcripts(SECOND) == _transcripts(SECOND)
    assert _transcripts(FIRST) == _transcripts(FIRST)


def test_simulators_sharing_a_jvm_are_not_independent():
    """Interleaved with another simulator of the same JVM, an episode no longer plays as it does alone
    (both still win: the gold path is computed at load, but the world it meets has changed)."""
    first_alone, second_alone = _transcripts(FIRST)[0], _transcripts(SECOND)[0]
    first_shared, second_shared = _transcripts(FIRST, SECOND)
    assert first_shared[-1][1:] == second_shared[-1][1:] == (100, True)
    assert (first_shared, second_shared) != (first_alone, second_alone)


def test_jvm_options_reach_the_simulators_jvm_only():
    """``jvm_options`` (``--env-option jvm_options=...``) are flags of this adapter's JVM, and this
    process's environment is left as it was."""
    import os
    from pathlib import Path

    from openrlhf_act.envs.scienceworld import REPRODUCIBLE_JVM_FLAGS, ScienceWorld

    before = os.environ.get("JAVA_TOOL_OPTIONS")
    with ScienceWorld(jvm_options="-XX:+UseSerialGC") as env:
        environ = Path(f"/proc/{env.java_pid}/environ").read_bytes().split(b"\0")
        flags = [*(before or "").split(), *REPRODUCIBLE_JVM_FLAGS, "-XX:+UseSerialGC"]
        assert ("JAVA_TOOL_OPTIONS=" + " ".join(flags)).encode() in environ
        assert env.task_names
    assert os.environ.get("JAVA_TOOL_OPTIONS") == before
