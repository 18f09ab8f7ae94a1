"""The one environment pool (openrlhf_act/envs/pool.py) driving scripted jobs: results come back in the
caller's thread, a crashed or hung (stopped) worker is replaced and its job retried on a fresh simulator,
a job that fails every time is reported without losing the others, and a bug in ``play`` is raised."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from openrlhf_act.envs.pool import EnvSession, JobFailed, WorkerPool
from openrlhf_act.envs.registry import resolve_episodes
from tests.test_envs import StandInWebShop


@pytest.fixture
def webshop():
    service = StandInWebShop().start()
    yield {"url": service.url}
    service.stop()


def first_observation(session: EnvSession, job) -> str:
    return session.start(job).first.observation


def test_jobs_are_played_on_every_worker_and_reported_in_the_calling_thread(webshop):
    tasks = resolve_episodes("webshop", split="test", variations=[0, 1, 2, 3])
    results, threads = {}, set()

    def on_done(job, result):
        threads.add(threading.current_thread())
        results[job.variation] = result

    with WorkerPool("webshop", webshop, 2) as pool:
        pids = [w.pid for w in pool.workers]
        pool.run(tasks, first_observation, on_done)
        assert [w.pid for w in pool.workers] == pids  # nothing restarted
    assert threads == {threading.main_thread()}
    assert sorted(results) == [0, 1, 2, 3] and all("Instruction:" in r for r in results.values())
    assert not any(w.process.is_alive() for w in pool.workers)


def test_crashed_and_hung_workers_are_replaced_and_their_jobs_retried(webshop):
    tasks = resolve_episodes("webshop", split="test", variations=[0, 1, 2])
    attempts: dict[int, int] = {}

    def play(session: EnvSession, job) -> str:
        attempts[job.variation] = attempts.get(job.variation, 0) + 1
        session.start(job)
        if job.variation == 0 and attempts[0] == 1:
            os.kill(session.worker.pid, signal.SIGKILL)  # crashes once
        if job.variation == 1 and attempts[1] == 1:
            os.kill(session.worker.pid, signal.SIGSTOP)  # hangs once: no answer before the step timeout
        if job.variation == 2:
            os.kill(session.worker.pid, signal.SIGKILL)  # crashes every time
        return session.step("search[red shoes]").observation

    results = {}
    with WorkerPool("webshop", webshop, 2) as pool:
        pool.run(tasks, play, lambda job, result: results.__setitem__(job.variation, result), step_timeout=3)
        assert all(w.process.is_alive() and w.pending is None for w in pool.workers)
    assert attempts == {0: 2, 1: 2, 2: 2}
    assert isinstance(results[0], str) and isinstance(results[1], str)
    assert isinstance(results[2], JobFailed) and results[2].attempts == 2 and "died" in results[2].error


def test_a_bug_in_play_stops_the_run_and_is_raised(webshop):
    tasks = resolve_episodes("webshop", split="test", variations=[0, 1])

    def play(session: EnvSession, job) -> str:
        raise ZeroDivisionError("a bug, not an environment failure")

    with WorkerPool("webshop", webshop, 1) as pool, pytest.raises(ZeroDivisionError):
        pool.run(tasks, play, lambda job, result: None)
