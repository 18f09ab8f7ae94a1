"""Collect expert trajectories by replaying an environment's own expert (ScienceWorld gold paths).

Episodes run in parallel worker processes, one simulator each. Workers ignore Ctrl-C; the parent
catches it, tells them to stop after their current episode, and every worker closes its simulator
in a ``finally``. Finished episodes are appended to ``<out>.partial`` (a
:class:`openrlhf_act.files.RecordLog`) as they complete, so an interrupted run resumes where it
stopped; the final file is written sorted (deterministic) and atomically, then the partial file is
removed.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import signal
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openrlhf_act.envs.base import EnvError, EnvTask
from openrlhf_act.files import RecordLog, read_jsonl, write_jsonl
from openrlhf_act.schema import Outcome, Step, Trajectory

logger = logging.getLogger(__name__)
COLLECTABLE_ENVS = ("scienceworld",)
_STOP = None


@dataclass
class CollectStats:
    episodes: int = 0
    resumed: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    steps: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "episodes": self.episodes,
            "resumed": self.resumed,
            "kept": self.kept,
            "steps": self.steps,
            "dropped": dict(sorted(self.dropped.items())),
        }


def parse_variations(spec: str) -> tuple[str | None, list[int] | None, int | None]:
    """``train`` | ``dev:5`` | ``test:10`` (first N of a benchmark split) | ``0,3,7-9`` (explicit ids).

    Returns (split, explicit ids, limit).
    """
    spec = spec.strip()
    head, _, limit = spec.partition(":")
    if head in ("train", "dev", "test"):
        if limit and not limit.isdigit():
            raise ValueError(f"bad variation limit in {spec!r}: expected SPLIT:N with N a number")
        return head, None, int(limit) if limit else None
    ids: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        lo, dash, hi = part.partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()):
            raise ValueError(f"bad variation spec {spec!r}: use SPLIT[:N] (train, dev, test) or ids like 0,3,7-9")
        ids.extend(range(int(lo), int(hi) + 1) if dash else [int(lo)])
    return None, ids, None


def plan_episodes(env_name: str, tasks: Sequence[str], variations: str) -> list[EnvTask]:
    """Resolve task names and variation specs into concrete episodes (validated against the env)."""
    if env_name not in COLLECTABLE_ENVS:
        raise ValueError(f"collection supports {', '.join(COLLECTABLE_ENVS)}; not {env_name!r}")
    from openrlhf_act.envs.scienceworld import ScienceWorld

    split, ids, limit = parse_variations(variations)
    episodes: list[EnvTask] = []
    with ScienceWorld() as env:
        for task in tasks:
            if split is not None:
                chosen = env.variations(task, split)[:limit]
            else:
                known = sorted({v for s in ("train", "dev", "test") for v in env.variations(task, s)})
                unknown = [v for v in ids or [] if v not in known]
                if unknown:
                    raise EnvError(f"ScienceWorld task {task!r} has variations {known[0]}..{known[-1]}, not {unknown}")
                chosen = list(ids or [])
            for variation in chosen:
                episodes.append(EnvTask(env_name, task, variation, split=split))
    return episodes


def _episode(env, task: EnvTask, with_admissible: bool) -> dict[str, Any]:
    """Replay the expert on one episode; returns a trajectory JSON or a drop reason."""
    env.load(task)
    first = env.reset()
    gold = env.expert_actions()
    if not gold:
        return {"drop": "no_expert_path", "task_id": task.task_id}
    steps: list[Step] = []
    current = first
    for action in gold:
        nxt = env.step(action)
        steps.append(
            Step(
                observation=current.observation,
                action=action,
                admissible=current.admissible if with_admissible else None,
                reward=nxt.reward,
            )
        )
        current = nxt
        if nxt.done:
            break
    trajectory = Trajectory(
        task_id=task.task_id,
        env=task.env,
        task=env.task_description,
        steps=tuple(steps),
        outcome=Outcome(score=current.score, success=current.won),
        meta={"task_name": task.name, "variation": task.variation, "split": task.split, "source": "gold_path"},
    )
    if not current.won:
        return {"drop": "expert_did_not_succeed", "task_id": task.task_id, "trajectory": trajectory.to_json()}
    return {"task_id": task.task_id, "trajectory": trajectory.to_json()}


def _worker(env_name: str, jobs: mp.Queue, results: mp.Queue, stop: Any, with_admissible: bool) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    env = None
    try:
        from openrlhf_act.envs.scienceworld import ScienceWorld

        env = ScienceWorld(gold_path=True, admissible=with_admissible)
        while not stop.is_set():
            item = jobs.get()
            if item is _STOP:
                break
            task = EnvTask(**item)
            try:
                results.put(_episode(env, task, with_admissible))
            except EnvError as exc:
                results.put({"drop": "env_error", "task_id": task.task_id, "error": str(exc)})
    except EnvError as exc:
        results.put({"fatal": str(exc)})
    finally:
        if env is not None:
            env.close()
        results.put({"worker_done": True})


def _read_partial(path: Path) -> dict[str, dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    for record in read_jsonl(path, log=True):
        if record.get("drop") == "env_error":
            continue  # a crashed or interrupted simulator: retry this episode on resume
        done[record["task_id"]] = record
    return done


def collect(
    episodes: Sequence[EnvTask],
    out_path: str | Path,
    *,
    workers: int = 2,
    with_admissible: bool = True,
    keep_failed: bool = False,
    progress: bool | None = None,
) -> CollectStats:
    """Run the episodes, write kept trajectories to ``out_path`` (sorted by task, variation)."""
    from tqdm import tqdm

    out = Path(out_path)
    partial = out.with_name(out.name + ".partial")
    done = _read_partial(partial)
    stats = CollectStats(episodes=len(episodes), resumed=sum(1 for e in episodes if e.task_id in done))
    todo = [e for e in episodes if e.task_id not in done]
    if todo:
        _run_workers(
            todo,
            partial,
            workers=max(1, min(workers, len(todo))),
            with_admissible=with_admissible,
            progress=tqdm(
                total=len(episodes),
                initial=stats.resumed,
                desc="collect",
                unit="ep",
                disable=None if progress is None else not progress,
            ),
        )
        done = _read_partial(partial)
    order = {e.task_id: i for i, e in enumerate(episodes)}
    kept = []
    for task_id in sorted((t for t in done if t in order), key=order.__getitem__):
        record = done[task_id]
        if "drop" in record:
            stats.dropped[record["drop"]] += 1
            if not (keep_failed and record["drop"] == "expert_did_not_succeed"):
                continue
        kept.append(record["trajectory"])
        stats.steps += len(record["trajectory"]["steps"])
    stats.dropped["env_error"] += sum(1 for e in episodes if e.task_id not in done)
    if not stats.dropped["env_error"]:
        del stats.dropped["env_error"]
    stats.kept = len(kept)
    write_jsonl(out, kept)
    partial.unlink(missing_ok=True)
    return stats


def _run_workers(todo: Sequence[EnvTask], partial: Path, *, workers: int, with_admissible: bool, progress) -> None:
    """Feed the episodes to worker processes and append their results to ``partial`` as they come.

    The first Ctrl-C asks the workers to stop after their current episode; the parent keeps draining
    their results (nothing finished is lost, and a worker cannot exit while its queue is unread) until
    every worker has closed its simulator, then raises ``KeyboardInterrupt``. A second Ctrl-C stops
    waiting.
    """
    ctx = mp.get_context("spawn")
    jobs: mp.Queue = ctx.Queue()
    results: mp.Queue = ctx.Queue()
    stop = ctx.Event()
    for task in todo:
        jobs.put({"env": task.env, "name": task.name, "variation": task.variation, "split": task.split})
    for _ in range(workers):
        jobs.put(_STOP)
    procs = [
        ctx.Process(target=_worker, args=(todo[0].env, jobs, results, stop, with_admissible), daemon=True)
        for _ in range(workers)
    ]
    for proc in procs:
        proc.start()

    def on_sigint(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        logger.warning(
            "interrupted: workers finish their current episode and close their simulators (Ctrl-C again to abort)"
        )

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if in_main_thread else None
    finished_workers = 0
    fatal: str | None = None
    try:
        with RecordLog(partial) as sink:
            while finished_workers < workers:
                try:
                    message = results.get(timeout=1.0)
                except queue.Empty:
                    if not any(p.is_alive() for p in procs):
                        break
                    continue
                if "worker_done" in message:
                    finished_workers += 1
                elif "fatal" in message:
                    fatal = message["fatal"]
                else:
                    sink.append(message)
                    progress.update(1)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous)
        progress.close()
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=10)
    if stop.is_set():
        raise KeyboardInterrupt
    if fatal:
        raise EnvError(fatal)
