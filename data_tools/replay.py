"""``openrlhf-act data replay``: expert trajectories played again in their environment.

Public expert data carries the text of the environment version and prompt it was recorded with, and
rarely the admissible actions. Replaying each recorded action in the real simulator gives canonical
trajectories whose observations are the text our live environments show at evaluation time, with the
admissible actions and the score at every step and the outcome, so ``data build`` trains on exactly
what ``eval episodes`` shows (tests/test_parity.py) and the ``admissible`` sampler works on public data.

Each trajectory is matched to its episode (:mod:`data_tools.episode_match`), then played in the one
environment pool (:mod:`openrlhf_act.envs.pool`): known action drifts are mapped
(:mod:`data_tools.action_drift`); an action the environment rejects drops the trajectory, reported
with its id and step in ``<out stem>.rejects.jsonl``, and the others go on. Finished trajectories are
appended to ``<out>.partial`` as they complete, so an interrupted replay resumes; the output keeps the
input order and is written atomically, then ``<out stem>.manifest.json``.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from data_tools.action_drift import map_drift
from data_tools.episode_match import MatchError, detect_simplification, matcher_for
from data_tools.readers import ReaderStats, read_trajectories
from openrlhf_act import __version__
from openrlhf_act.envs.base import EnvTask
from openrlhf_act.envs.pool import EnvSession, JobFailed, WorkerFailed, WorkerPool
from openrlhf_act.envs.registry import env_versions
from openrlhf_act.errors import DataError, UsageError
from openrlhf_act.files import RecordLog, dumps, read_jsonl, sha256_file, write_json, write_jsonl
from openrlhf_act.schema import Outcome, Step, Trajectory

logger = logging.getLogger(__name__)
MANIFEST_SCHEMA = "openrlhf-act/replay-manifest/v1"
REPLAY_ENVS = ("scienceworld", "alfworld")
AUTO = "auto"


@dataclass(frozen=True)
class ReplayConfig:
    """What a replay reads and how it plays (recorded in the manifest and checked on resume)."""

    env: str
    inputs: tuple[str, ...]
    input_format: str = "auto"
    simplification: str = AUTO  # auto | none | a ScienceWorld simplification string (easy, ...)
    data_dir: str | None = None
    workers: int = 2
    retries: int = 1

    def __post_init__(self) -> None:
        if self.env not in REPLAY_ENVS:
            raise UsageError(f"data replay supports {', '.join(REPLAY_ENVS)}, not {self.env!r}")
        if self.workers < 1:
            raise UsageError(f"--workers must be >= 1, got {self.workers}")
        if self.simplification != AUTO and self.env != "scienceworld":
            raise UsageError("--simplification applies to ScienceWorld only")


@dataclass(frozen=True)
class ReplayJob:
    """One trajectory to play: its key in the partial file, the episode it belongs to, its record."""

    key: str
    task: EnvTask
    matched_by: str
    trajectory: Trajectory

    def __str__(self) -> str:
        return f"{self.trajectory.task_id} ({self.key})"


@dataclass
class ReplayStats:
    trajectories: int = 0
    resumed: int = 0
    kept: int = 0
    won: int = 0
    steps: int = 0
    matched_by: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    drifts: Counter[str] = field(default_factory=Counter)
    trailing_actions: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            k: dict(sorted(v.items())) if isinstance(v, Counter) else v for k, v in vars(self).items()
        }
        out["seconds"] = round(self.seconds, 2)
        out["steps_per_second"] = round(self.steps / self.seconds, 1) if self.seconds else None
        return out


def replay(config: ReplayConfig, out_path: str | Path, *, progress: bool | None = None) -> ReplayStats:
    """Replay every trajectory of ``config.inputs``; write kept ones, rejects and the manifest."""
    from tqdm import tqdm

    out = Path(out_path)
    partial = out.with_name(out.name + ".partial")
    trajectories = list(read_trajectories(config.inputs, config.input_format, env=config.env, stats=ReaderStats()))
    simplification, detected = _simplification(config, trajectories)
    settings = json.loads(dumps({"config": asdict(config), "simplification": simplification}))
    done = _read_partial(partial, settings)
    stats = ReplayStats(trajectories=len(trajectories))
    keys = [f"{i}:{t.task_id}" for i, t in enumerate(trajectories)]
    stats.resumed = sum(1 for key in keys if key in done)
    started = time.monotonic()
    with RecordLog(partial) as log:
        if not partial.stat().st_size:
            log.append({"settings": settings})
        jobs = _match_all(config, simplification, trajectories, keys, done, log)
        disable = None if progress is None else not progress
        bar = tqdm(total=len(trajectories), initial=len(trajectories) - len(jobs), desc="replay", disable=disable)

        def on_done(job: ReplayJob, result: dict[str, Any] | JobFailed) -> None:
            if isinstance(result, JobFailed):  # not logged: a resumed replay tries it again
                record = {"key": job.key, "drop": "env_error", "task_id": job.trajectory.task_id, "error": result.error}
                logger.warning("replay of %s failed: %s", job, result.error)
            else:
                record = result
                log.append(record)
            done[job.key] = record
            bar.update(1)

        try:
            if jobs:
                options = _env_options(config, simplification)
                with WorkerPool(config.env, options, min(config.workers, len(jobs))) as pool:
                    pool.run(jobs, _play, on_done, retries=config.retries)
        finally:
            bar.close()
    stats.seconds = time.monotonic() - started
    kept, rejects = _outcome(keys, done, stats)
    rejects_path = out.with_name(out.stem + ".rejects.jsonl")
    write_jsonl(rejects_path, rejects)
    write_json(_manifest_path(out), _manifest(config, simplification, detected, stats))
    if not stats.dropped.get("env_error"):
        partial.unlink(missing_ok=True)
    if not kept:  # an empty output would only fail later, in `data build`, far from the reason
        reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(stats.dropped.items()))
        raise DataError(
            f"no trajectory could be replayed: all {len(keys)} dropped ({reasons}); "
            f"why, per trajectory: {rejects_path}; {out} was not written"
        )
    write_jsonl(out, kept)
    return stats


def _simplification(config: ReplayConfig, trajectories: Sequence[Trajectory]) -> tuple[str, bool]:
    """(the ScienceWorld simplification string, whether it was detected)."""
    if config.env != "scienceworld":
        return "", False
    if config.simplification == AUTO:
        return detect_simplification(trajectories), True
    return ("" if config.simplification == "none" else config.simplification), False


def _env_options(config: ReplayConfig, simplification: str) -> dict[str, Any]:
    if config.env == "scienceworld":
        return {"simplification": simplification, "admissible": True}
    return {"expert": None, "data_dir": config.data_dir}


def _read_partial(partial: Path, settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Finished trajectories of an interrupted replay of the same inputs and settings."""
    done: dict[str, dict[str, Any]] = {}
    for i, record in enumerate(read_jsonl(partial, log=True)):
        if i == 0:
            if record.get("settings") != settings:
                raise UsageError(
                    f"{partial} holds an interrupted replay with other inputs or settings; delete it to start over"
                )
            continue
        done[record["key"]] = record
    return done


def _match_all(config, simplification, trajectories, keys, done, log: RecordLog) -> list[ReplayJob]:
    """Jobs for the trajectories not finished yet; those whose episode is unknown are dropped now."""
    matcher = matcher_for(config.env, simplification=simplification, data_dir=config.data_dir)
    jobs = []
    try:
        for key, trajectory in zip(keys, trajectories):
            if key in done:
                continue
            if trajectory.env != config.env:
                record = _dropped(key, trajectory, "other_env", f"the trajectory is from {trajectory.env!r}")
            else:
                try:
                    match = matcher.match(trajectory)
                except MatchError as exc:
                    record = _dropped(key, trajectory, exc.reason, str(exc))
                else:
                    jobs.append(ReplayJob(key, match.task, match.how, trajectory))
                    continue
            log.append(record)
            done[key] = record
    finally:
        matcher.close()
    return jobs


def _dropped(key: str, trajectory: Trajectory, reason: str, error: str, step: int | None = None) -> dict[str, Any]:
    record = {"key": key, "drop": reason, "task_id": trajectory.task_id, "error": error}
    if step is not None:
        record["step"] = step
    return record


def _play(session: EnvSession, job: ReplayJob) -> dict[str, Any]:
    """Play the recorded actions from the episode's start (runs in a pool thread)."""
    source, env = job.trajectory, job.task.env
    started = session.start(job.task)
    current = started.first
    steps: list[Step] = []
    drifts: Counter[str] = Counter()
    trailing = 0
    for i, recorded in enumerate(source.steps):
        if current.done:
            trailing = len(source.steps) - i
            break
        action, rule = map_drift(env, recorded.action, current.admissible)
        if rule:
            drifts[rule] += 1
        try:
            after = session.step(action)
        except WorkerFailed as exc:
            raise WorkerFailed(f"step {i} ({action!r}): {exc}") from exc
        if not after.valid:
            error = f"the environment rejected {action!r}: {after.observation.strip()[:200]}"
            return _dropped(job.key, source, "action_rejected", error, step=i)
        steps.append(Step(current.observation, action, recorded.thought, current.admissible, after.reward, after.score))
        current = after
        if after.done and not after.won and i + 1 < len(source.steps):
            return _dropped(job.key, source, "episode_lost", f"the episode ended lost after {action!r}", step=i)
    meta: dict[str, Any] = {"task_name": job.task.name, "split": job.task.split, "source": "replay"}
    if job.task.variation is not None:
        meta["variation"] = job.task.variation
    if job.task.game_file is not None:
        meta["game_file"] = job.task.game_file
    if env == "scienceworld":
        meta["simplification"] = session.worker.options.get("simplification", "")
    meta |= {"source_id": source.task_id, "matched_by": job.matched_by, "drifts": dict(sorted(drifts.items()))}
    if "format" in source.meta:
        meta["source_format"] = source.meta["format"]
    trajectory = Trajectory(
        task_id=job.task.task_id,
        env=env,
        task=started.task_description,
        steps=tuple(steps),
        outcome=Outcome(score=current.score, success=current.won),
        meta=meta,
    )
    return {"key": job.key, "trajectory": trajectory.to_json(), "trailing_actions": trailing}


def _outcome(keys: Sequence[str], done: dict[str, dict[str, Any]], stats: ReplayStats):
    """Kept trajectories (input order) and reject rows; fills the counts."""
    kept, rejects = [], []
    for key in keys:
        record = done.get(key)
        if record is None:
            stats.dropped["env_error"] += 1
            continue
        if "drop" in record:
            stats.dropped[record["drop"]] += 1
            rejects.append(record)
            continue
        trajectory = record["trajectory"]
        kept.append(trajectory)
        stats.kept += 1
        stats.won += bool(trajectory["outcome"].get("success"))
        stats.steps += len(trajectory["steps"])
        stats.matched_by[trajectory["meta"]["matched_by"]] += 1
        stats.drifts.update(trajectory["meta"]["drifts"])
        stats.trailing_actions += record["trailing_actions"]
    return kept, rejects


def _manifest_path(out: Path) -> Path:
    return out.with_name(out.stem + ".manifest.json")


def _manifest(config: ReplayConfig, simplification: str, detected: bool, stats: ReplayStats) -> dict[str, Any]:
    inputs = {}
    for path in config.inputs:
        try:
            inputs[path] = sha256_file(path)
        except OSError as exc:
            raise DataError(f"cannot hash input {path}: {exc}") from exc
    return {
        "schema": MANIFEST_SCHEMA,
        "version": __version__,
        "env": config.env,
        "env_versions": env_versions(config.env),
        "config": asdict(config),
        "simplification": {"value": simplification, "detected": detected},
        "inputs": inputs,
        "counts": stats.to_json(),
    }
