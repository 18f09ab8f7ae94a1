"""Options a pool's workers start with: ScienceWorld's JVM garbage collector is picked by workers per core
(the serial GC once the workers' JVMs fill the cores, the JVM's default otherwise), an explicit ``jvm_options``
wins, and ``eval episodes`` records what the workers ran with."""

from __future__ import annotations

from pathlib import Path

import pytest

from openrlhf_act.envs import scienceworld
from openrlhf_act.envs.scienceworld import SERIAL_GC, ScienceWorld, default_jvm_options
from tests.conftest import requires_scienceworld


@pytest.mark.parametrize(("workers", "cores", "flags"), [(1, 2, ""), (2, 2, SERIAL_GC), (3, 2, SERIAL_GC),
                                                         (1, 1, SERIAL_GC), (2, 16, "")])  # fmt: skip
def test_the_serial_gc_once_the_workers_fill_the_cores(workers, cores, flags):
    assert default_jvm_options(workers, cores) == flags


def test_explicit_jvm_options_win(monkeypatch):
    monkeypatch.setattr(scienceworld, "usable_cores", lambda: 2)
    assert ScienceWorld.worker_options({"gold_path": True}, 2) == {"gold_path": True, "jvm_options": SERIAL_GC}
    assert ScienceWorld.worker_options({"gold_path": True}, 1) == {"gold_path": True, "jvm_options": ""}
    assert ScienceWorld.worker_options({"jvm_options": ""}, 8) == {"jvm_options": ""}
    assert ScienceWorld.worker_options({"jvm_options": "-Xmx1g"}, 8) == {"jvm_options": "-Xmx1g"}


def _jvm_flags(pid: int) -> list[str]:
    """The flags a running JVM was given through ``JAVA_TOOL_OPTIONS``."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    prefix = b"JAVA_TOOL_OPTIONS="
    return [flag for entry in environ if entry.startswith(prefix) for flag in entry[len(prefix) :].decode().split()]


@pytest.mark.slow
@requires_scienceworld
def test_pool_workers_jvms_get_the_gc_picked_for_the_pool_size(monkeypatch):
    from openrlhf_act.envs.pool import EnvSession, WorkerPool
    from openrlhf_act.envs.registry import resolve_episodes

    monkeypatch.setattr(scienceworld, "usable_cores", lambda: 2)
    monkeypatch.delenv("JAVA_TOOL_OPTIONS", raising=False)
    task = resolve_episodes("scienceworld", split="train", tasks=["find-non-living-thing"], episodes=1)[0]
    for size, serial in ((2, True), (1, False)):
        with WorkerPool("scienceworld", {}, size) as pool:
            assert pool.options == {}  # what the caller asked for, compared when a run reuses the pool
            for worker in pool.workers:
                EnvSession(worker, 300, 60).start(task)
                assert (SERIAL_GC in _jvm_flags(worker.child_pids[0])) is serial


@pytest.mark.slow
@requires_scienceworld
def test_eval_records_the_options_its_workers_ran_with(monkeypatch, tmp_path):
    from openrlhf_act.envs.registry import expert_options, resolve_episodes
    from openrlhf_act.eval.episodes import EpisodeRunner
    from openrlhf_act.eval.policies import ExpertPolicy

    monkeypatch.setattr(scienceworld, "usable_cores", lambda: 1)
    tasks = resolve_episodes("scienceworld", split="train", tasks=["find-non-living-thing"], episodes=1)
    options = expert_options("scienceworld")
    summary = EpisodeRunner("scienceworld", tasks, ExpertPolicy(), tmp_path, workers=1, env_options=options).run()
    assert summary["last_invocation"]["env_worker_options"] == {**options, "jvm_options": SERIAL_GC}
    assert summary["splits"]["train"]["micro"]["success_rate"] == 100.0
