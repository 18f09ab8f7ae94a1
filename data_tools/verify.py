"""Verified pairs (``data build --verify-alternatives``): play each alternative from its state in the
environment and record the environment's verdict on it.

The paper contrasts the expert's action with any other action the policy proposes; some of those are
as good as the expert's (another way to the same goal), and a label calling them worse teaches the
judge something false. Playing the alternative tells which: ``rejected`` (the environment did not
accept the command), ``task_lost``, ``task_won``, ``progress`` (the score rose) or ``no_progress``,
with its score change next to the expert action's. ``--drop-unverified`` then drops the pairs whose
alternative was accepted, not lost, and gained at least as much score as the expert's action.

One job per trajectory, so one simulator walks the whole trajectory. Where the environment can
snapshot its state (``TextEnv.snapshots``: ALFWorld), the job walks the expert's actions forward once
and, at each state with a pair, snapshots, plays each alternative and restores (``walk_forward``).
Elsewhere (ScienceWorld has no state save) each alternative starts from a fresh reset with the
expert's earlier actions replayed (``prefix_replay``: a pair at step i costs i + 1 steps). Environment
steps, starts, restores and seconds (wall, with the simulators' start, and ``play_seconds``, the jobs
alone, summed over workers) are counted for the manifest: the cost of verification.

An alternative the environment's parser is known to reject (``TextEnv.rejected_command``: ScienceWorld
offers some in its admissible lists) is ``rejected`` without being played, counted by pattern
(``rejected_unplayed``).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from openrlhf_act.envs.base import EnvStep, EnvTask
from openrlhf_act.envs.pool import EnvSession, JobFailed, WorkerPool
from openrlhf_act.envs.registry import env_class
from openrlhf_act.schema import ContrastPair, Trajectory

logger = logging.getLogger(__name__)

REJECTED, NO_PROGRESS, PROGRESS, TASK_LOST, TASK_WON = "rejected", "no_progress", "progress", "task_lost", "task_won"
VERDICTS = (REJECTED, NO_PROGRESS, PROGRESS, TASK_LOST, TASK_WON)
WALK_FORWARD, PREFIX_REPLAY = "walk_forward", "prefix_replay"
# Why a pair has no verdict (counted in the manifest, never kept as verified).
NO_EPISODE, ENV_FAILED, PREFIX_DIVERGED = "no_episode", "env_failed", "prefix_diverged"
VERIFIABLE_ENVS = ("scienceworld", "alfworld")


@dataclass(frozen=True)
class Verdict:
    """What the environment made of one alternative: the verdict and the score it gained."""

    action: str
    verdict: str
    delta: float


@dataclass(frozen=True)
class Verification:
    """The environment's verdict on every alternative of one pair, with the expert action's score gain."""

    expert_delta: float
    alternatives: tuple[Verdict, ...]

    def as_good_as_expert(self) -> bool:
        """Some alternative was accepted, did not lose, and gained at least the expert's score: the
        label "the expert's action is the better one" would then be wrong or unfounded."""
        return any(v.verdict not in (REJECTED, TASK_LOST) and v.delta >= self.expert_delta for v in self.alternatives)

    def to_json(self) -> dict[str, Any]:
        return {
            "expert_delta": self.expert_delta,
            "alternatives": [{"action": v.action, "verdict": v.verdict, "delta": v.delta} for v in self.alternatives],
        }


@dataclass(frozen=True)
class Episode:
    """What verification keeps of one trajectory: its episode and environment options (or why it has
    none), the expert's actions and the scores recorded after them."""

    trajectory_id: str
    env: str
    task: EnvTask | None
    options: tuple[tuple[str, Any], ...]
    actions: tuple[str, ...]
    scores: tuple[float | None, ...]
    error: str | None = None


def episode_of(trajectory: Trajectory) -> Episode:
    """The episode a trajectory was played in, from its ``meta`` (collected and replayed trajectories
    carry it); ``error`` says why when the meta cannot tell."""
    meta, env = trajectory.meta, trajectory.env
    task, options, error = None, (), None
    name = meta.get("task_name")
    split = meta.get("split") if isinstance(meta.get("split"), str) else None
    if env == "scienceworld":
        variation = meta.get("variation")
        if isinstance(name, str) and isinstance(variation, int) and not isinstance(variation, bool):
            task = EnvTask(env, name, variation=variation, split=split)
            options = (("simplification", str(meta.get("simplification") or "")),)
    elif env == "alfworld":
        game = meta.get("game_file")
        if isinstance(game, str) and game:
            from openrlhf_act.envs.alfworld import task_type_of

            task = EnvTask(env, name if isinstance(name, str) else task_type_of(game), game_file=game, split=split)
            options = (("expert", None),)  # no planner: a step need not replan
    else:
        error = (
            f"trajectory {trajectory.task_id!r}: alternatives are verified in {', '.join(VERIFIABLE_ENVS)}, not {env!r}"
        )
    if task is None and error is None:
        needs = "task_name and variation" if env == "scienceworld" else "game_file"
        error = (
            f"trajectory {trajectory.task_id!r} does not say which {env} episode it is (its meta needs {needs}): "
            "run `openrlhf-act data replay` on its file first, then build from the replayed file"
        )
    return Episode(
        trajectory.task_id,
        env,
        task,
        options,
        tuple(s.action for s in trajectory.steps),
        tuple(s.score for s in trajectory.steps),
        error,
    )


@dataclass(frozen=True)
class Job:
    """One trajectory to verify: its episode and its pairs' alternatives by step, in step order."""

    episode: Episode
    pairs: tuple[tuple[int, tuple[str, ...]], ...]
    walk: bool

    def __str__(self) -> str:
        return self.episode.trajectory_id


@dataclass
class JobResult:
    verified: dict[int, Verification] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    steps: int = 0
    starts: int = 0
    restores: int = 0
    seconds: float = 0.0  # playing this job, without the pool's start
    unplayed: Counter[str] = field(default_factory=Counter)  # known rejections by pattern


@dataclass
class VerifyStats:
    """Verdicts and failures, and the cost: environment steps, starts, restores and seconds."""

    verdicts: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    verified_pairs: int = 0
    steps: int = 0
    starts: int = 0
    restores: int = 0
    seconds: float = 0.0
    play_seconds: float = 0.0
    unplayed: Counter[str] = field(default_factory=Counter)
    groups: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        pairs = self.verified_pairs + sum(self.failed.values())
        modes = sorted({g["mode"] for g in self.groups})
        return {
            "mode": "+".join(modes) if modes else None,
            "pairs": pairs,
            "verified_pairs": self.verified_pairs,
            "failed_pairs": dict(sorted(self.failed.items())),
            "verdicts": {v: self.verdicts[v] for v in VERDICTS},
            "rejected_unplayed": dict(sorted(self.unplayed.items())),
            "env_steps": self.steps,
            "env_starts": self.starts,
            "restores": self.restores,
            "seconds": round(self.seconds, 3),
            "play_seconds": round(self.play_seconds, 3),
            "steps_per_pair": round(self.steps / pairs, 3) if pairs else None,
            "seconds_per_pair": round(self.seconds / pairs, 4) if pairs else None,
            "play_seconds_per_pair": round(self.play_seconds / pairs, 4) if pairs else None,
            "groups": self.groups,
        }


def judge(action: str, before: EnvStep, after: EnvStep) -> Verdict:
    """The verdict on ``action`` played at ``before`` (see the module docstring)."""
    delta = after.score - before.score
    if not after.valid:
        verdict = REJECTED
    elif after.won:
        verdict = TASK_WON
    elif after.done or after.score < 0:
        verdict = TASK_LOST
    elif delta > 0:
        verdict = PROGRESS
    else:
        verdict = NO_PROGRESS
    return Verdict(action, verdict, delta)


def known_rejection(env: str, action: str, result: JobResult) -> Verdict | None:
    """The ``rejected`` verdict of an alternative the environment's parser is known to reject, counted;
    ``None`` when it must be played."""
    reason = env_class(env).rejected_command(action)
    if reason is None:
        return None
    result.unplayed[reason] += 1
    return Verdict(action, REJECTED, 0.0)


def _diverged(nxt: EnvStep, step: int, last: int) -> bool:
    """The expert's own action was rejected, or ended the episode before its last verified state: the
    environment is not replaying this trajectory, so later states would be verified in another world."""
    return not nxt.valid or (nxt.done and step < last)


def play_walk(session: EnvSession, job: Job) -> JobResult:
    """Walk the expert's actions forward once; at each state with a pair snapshot, play, restore."""
    result, alternatives = JobResult(), dict(job.pairs)
    last = job.pairs[-1][0]
    current = session.start(job.episode.task).first
    result.starts += 1
    for step, action in enumerate(job.episode.actions[: last + 1]):
        verdicts = []
        if step in alternatives:
            token = session.snapshot()
            for alternative in alternatives[step]:
                if (known := known_rejection(job.episode.env, alternative, result)) is not None:
                    verdicts.append(known)
                    continue
                verdicts.append(judge(alternative, current, session.step(alternative)))
                session.restore(token)
                result.steps += 1
                result.restores += 1
        nxt = session.step(action)
        result.steps += 1
        if verdicts:
            result.verified[step] = Verification(nxt.score - current.score, tuple(verdicts))
        if _diverged(nxt, step, last):
            result.failed.update({s: PREFIX_DIVERGED for s, _ in job.pairs if s > step})
            break
        current = nxt
    return result


def _replay_prefix(session: EnvSession, job: Job, step: int, result: JobResult) -> EnvStep | None:
    """A fresh episode with the expert's actions before ``step`` played; None when the replay diverged."""
    current = session.start(job.episode.task).first
    result.starts += 1
    for i, action in enumerate(job.episode.actions[:step]):
        current = session.step(action)
        result.steps += 1
        if _diverged(current, i, step):
            return None
    return current


def play_replay(session: EnvSession, job: Job) -> JobResult:
    """Per pair, per alternative: reset, replay the expert's earlier actions, play the alternative. The
    expert's score gain comes from the trajectory's recorded score, else it is measured the same way."""
    result = JobResult()
    for index, (step, alternatives) in enumerate(job.pairs):
        verdicts = []
        before: EnvStep | None = None
        for alternative in alternatives:
            if (known := known_rejection(job.episode.env, alternative, result)) is not None:
                verdicts.append(known)
                continue
            before = _replay_prefix(session, job, step, result)
            if before is None:
                break
            verdicts.append(judge(alternative, before, session.step(alternative)))
            result.steps += 1
        if len(verdicts) == len(alternatives) and before is None:  # none played: the state's score is still needed
            before = _replay_prefix(session, job, step, result)
        if before is None:
            result.failed.update({s: PREFIX_DIVERGED for s, _ in job.pairs[index:]})
            break
        recorded = job.episode.scores[step]
        if recorded is not None:
            expert_delta = recorded - before.score
        else:
            start = _replay_prefix(session, job, step, result)
            if start is None:
                result.failed.update({s: PREFIX_DIVERGED for s, _ in job.pairs[index:]})
                break
            expert_delta = session.step(job.episode.actions[step]).score - start.score
            result.steps += 1
        result.verified[step] = Verification(expert_delta, tuple(verdicts))
    return result


def verify_pairs(
    episodes: Mapping[str, Episode],
    pairs: Iterable[ContrastPair],
    *,
    workers: int = 2,
    snapshots: bool = True,
    progress: bool | None = None,
) -> tuple[dict[str, Verification], VerifyStats]:
    """Verify every pair's alternatives; returns the verifications by state key (pairs that could not
    be verified are absent and counted in the stats by reason). ``snapshots`` False replays prefixes
    even where the environment could snapshot (to compare the two modes' verdicts and cost)."""
    stats = VerifyStats()
    by_trajectory: dict[str, list[ContrastPair]] = {}
    for pair in pairs:
        by_trajectory.setdefault(pair.state.task_id, []).append(pair)
    groups: dict[tuple[str, tuple[tuple[str, Any], ...]], list[Job]] = {}
    for task_id in sorted(by_trajectory):
        episode = episodes.get(task_id)
        if episode is None or episode.task is None:
            stats.failed[NO_EPISODE] += len(by_trajectory[task_id])
            continue
        steps = tuple(sorted((p.state.step, p.alternatives) for p in by_trajectory[task_id]))
        walk = snapshots and env_class(episode.env).snapshots
        groups.setdefault((episode.env, episode.options), []).append(Job(episode, steps, walk))
    verified: dict[str, Verification] = {}
    for (env, options), jobs in groups.items():
        stats.groups.append(_run_group(env, dict(options), jobs, workers, stats, verified, progress))
    return verified, stats


def _run_group(
    env: str,
    options: dict[str, Any],
    jobs: Sequence[Job],
    workers: int,
    stats: VerifyStats,
    verified: dict[str, Verification],
    progress: bool | None,
) -> dict[str, Any]:
    """Verify one pool's worth of jobs (same environment and options); returns the group's cost."""
    from tqdm import tqdm

    mode = WALK_FORWARD if jobs[0].walk else PREFIX_REPLAY
    pairs = sum(len(job.pairs) for job in jobs)
    group = {"env": env, "options": options, "mode": mode, "trajectories": len(jobs), "pairs": pairs}
    counted = JobResult()
    started = time.perf_counter()

    def on_done(job: Job, result: JobResult | JobFailed) -> None:
        bar.update(1)
        if isinstance(result, JobFailed):
            logger.warning("verification of %s failed after %d attempts: %s", job, result.attempts, result.error)
            stats.failed[ENV_FAILED] += len(job.pairs)
            return
        for step, verification in result.verified.items():
            verified[f"{job.episode.trajectory_id}#{step}"] = verification
            stats.verdicts.update(v.verdict for v in verification.alternatives)
        stats.verified_pairs += len(result.verified)
        stats.failed.update(result.failed.values())
        counted.steps += result.steps
        counted.starts += result.starts
        counted.restores += result.restores
        counted.seconds += result.seconds
        stats.unplayed.update(result.unplayed)

    def play(session: EnvSession, job: Job) -> JobResult:
        begun = time.perf_counter()
        result = (play_walk if mode == WALK_FORWARD else play_replay)(session, job)
        result.seconds = time.perf_counter() - begun
        return result

    with (
        tqdm(
            total=len(jobs), desc=f"verify ({env})", unit="traj", disable=None if progress is None else not progress
        ) as bar,
        WorkerPool(env, options, size=max(1, min(workers, len(jobs)))) as pool,
    ):
        pool.run(jobs, play, on_done)
    seconds = time.perf_counter() - started
    stats.steps += counted.steps
    stats.starts += counted.starts
    stats.restores += counted.restores
    stats.seconds += seconds
    stats.play_seconds += counted.seconds
    group.update(
        env_steps=counted.steps,
        env_starts=counted.starts,
        restores=counted.restores,
        seconds=round(seconds, 3),
        play_seconds=round(counted.seconds, 3),
        steps_per_pair=round(counted.steps / pairs, 3),
        seconds_per_pair=round(seconds / pairs, 4),
        play_seconds_per_pair=round(counted.seconds / pairs, 4),
    )
    return group
