"""Collect expert trajectories by replaying an environment's own expert (ScienceWorld gold paths).

Episodes run on the environment pool (:class:`openrlhf_act.envs.pool.WorkerPool`), one simulator per
worker process, so crashes and hangs are retried on a fresh simulator and the first Ctrl-C lets every
worker finish its current episode before all simulators are closed. Finished episodes are appended to
``<out>.partial`` (a :class:`openrlhf_act.files.RecordLog`) as they complete, so an interrupted run
resumes where it stopped; the final file is written sorted (deterministic) and atomically, then
``<out stem>.manifest.json`` (the episodes, counts and environment versions), then the partial file is removed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openrlhf_act import __version__
from openrlhf_act.envs.base import EnvError, EnvTask
from openrlhf_act.envs.pool import EnvSession, JobFailed, WorkerPool
from openrlhf_act.envs.registry import env_versions
from openrlhf_act.files import RecordLog, read_jsonl, write_json, write_jsonl
from openrlhf_act.schema import Outcome, Step, Trajectory

COLLECTABLE_ENVS = ("scienceworld",)
MANIFEST_SCHEMA = "openrlhf-act/collect-manifest/v1"


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
        _play_all(
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
    write_json(out.with_name(out.stem + ".manifest.json"), _manifest(episodes, stats, with_admissible))
    partial.unlink(missing_ok=True)
    return stats


def _manifest(episodes: Sequence[EnvTask], stats: CollectStats, with_admissible: bool) -> dict[str, Any]:
    """What was collected and with which environment (its versions decide the observations)."""
    envs = sorted({e.env for e in episodes})
    return {
        "schema": MANIFEST_SCHEMA,
        "version": __version__,
        "env_versions": {env: env_versions(env) for env in envs},
        "episodes": [e.task_id for e in episodes],
        "admissible": with_admissible,
        "counts": stats.to_json(),
    }


def _play_all(todo: Sequence[EnvTask], partial: Path, *, workers: int, with_admissible: bool, progress: Any) -> None:
    """Play the episodes on a pool of ``workers`` simulators, appending each result to ``partial``
    the moment it is done (in this thread). Ctrl-C: see :meth:`WorkerPool.run`; leaving the ``with``
    closes every simulator."""
    options = {"gold_path": True, "admissible": with_admissible}

    def on_done(task: EnvTask, result: dict[str, Any] | JobFailed) -> None:
        if isinstance(result, JobFailed):
            result = {"drop": "env_error", "task_id": task.task_id, "error": result.error}
        sink.append(result)
        progress.update(1)

    try:
        with RecordLog(partial) as sink, WorkerPool(todo[0].env, options, workers) as pool:
            pool.run(todo, lambda session, task: _episode(session, task, with_admissible=with_admissible), on_done)
    finally:
        progress.close()


def _episode(session: EnvSession, task: EnvTask, *, with_admissible: bool) -> dict[str, Any]:
    """Replay the expert on one episode; returns a trajectory JSON or a drop reason."""
    started = session.start(task)
    gold = session.expert()
    if not gold:
        return {"drop": "no_expert_path", "task_id": task.task_id}
    steps: list[Step] = []
    current = started.first
    for action in gold:
        nxt = session.step(action)
        steps.append(
            Step(
                observation=current.observation,
                action=action,
                admissible=current.admissible if with_admissible else None,
                reward=nxt.reward,
                score=nxt.score,
            )
        )
        current = nxt
        if nxt.done:
            break
    trajectory = Trajectory(
        task_id=task.task_id,
        env=task.env,
        task=started.task_description,
        steps=tuple(steps),
        outcome=Outcome(score=current.score, success=current.won),
        meta={
            "task_name": task.name,
            "variation": task.variation,
            "split": task.split,
            "source": "gold_path",
            "simplification": "",
        },
    )
    if not current.won:
        return {"drop": "expert_did_not_succeed", "task_id": task.task_id, "trajectory": trajectory.to_json()}
    return {"task_id": task.task_id, "trajectory": trajectory.to_json()}
