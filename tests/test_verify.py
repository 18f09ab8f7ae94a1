"""Verified pairs (`data build --verify-alternatives`, `--drop-unverified`) through the real environments:
ScienceWorld (prefix replay: no state save) and the ALFWorld fixture game (walk forward with snapshots)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from data_tools.build import AS_GOOD, UNVERIFIED, BuildConfig, _keep_verified, build
from data_tools.verify import (
    PREFIX_REPLAY,
    REJECTED,
    TASK_WON,
    VERDICTS,
    WALK_FORWARD,
    episode_of,
    verify_pairs,
)
from openrlhf_act.cli import main
from openrlhf_act.envs.base import EnvTask
from openrlhf_act.rewards.config import RewardConfig
from openrlhf_act.rewards.judgment import judgment_reward
from openrlhf_act.schema import ContrastPair, JudgmentLabel, Outcome, Step, Trajectory, decode_judgment_label
from openrlhf_act.states import states_from_trajectory
from tests.conftest import requires_scienceworld
from tests.test_build import rows, write_trajectories
from tests.test_envs import ALFWORLD_GAME, requires_alfworld_game

TASK = "find-non-living-thing"
NONSENSE = "xyzzy plugh the frobozz"


def _read(path: Path) -> list[Trajectory]:
    from data_tools.readers import read_trajectories

    return list(read_trajectories([str(path)], "canonical"))


def _labels(out: Path) -> list[JudgmentLabel]:
    return [decode_judgment_label(r["label"]) for r in rows(out / "train.jsonl") + rows(out / "eval.jsonl")]


def _check_counts(manifest: dict) -> dict:
    """The verification section adds up: every pair verified or failed, one verdict per alternative."""
    verification = manifest["verification"]
    assert set(verification["verdicts"]) == set(VERDICTS)
    assert verification["verified_pairs"] + sum(verification["failed_pairs"].values()) == verification["pairs"]
    assert sum(verification["verdicts"].values()) == verification["verified_pairs"]  # K = 2
    assert verification["steps_per_pair"] == round(verification["env_steps"] / verification["pairs"], 3)
    return verification


def test_a_trajectory_without_episode_meta_is_a_clear_error(tmp_path, capsys):
    """An ETO file not yet replayed cannot be verified: say so, and what to run."""
    trajectories = write_trajectories(tmp_path / "traj.jsonl", tasks=2, steps=2)
    args = ["data", "build", "--input", str(trajectories), "--verify-alternatives"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "'fam0/v0' does not say which scienceworld episode" in err and "openrlhf-act data replay" in err
    assert not (tmp_path / "a" / "train.jsonl").exists()

    assert main([*args, "--out", str(tmp_path / "b"), "--on-error", "skip"]) == 0  # counted, not kept as verified
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert _check_counts(manifest)["failed_pairs"] == {"no_episode": 4} and manifest["verification"]["mode"] is None
    assert all(label.verified is None for label in _labels(tmp_path / "b"))
    assert "verified 0 of 4 pairs (none played)" in capsys.readouterr().out

    assert main([*args, "--out", str(tmp_path / "c"), "--on-error", "skip", "--drop-unverified"]) == 0
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert manifest["drops"]["verification"] == {AS_GOOD: 0, UNVERIFIED: 4} and not _labels(tmp_path / "c")
    assert manifest["drops"]["states_without_pair"] == 0


def test_labels_carry_the_verdict_only_when_verified_and_the_reward_reads_them(tmp_path):
    plain = JudgmentLabel(2, ("open door", "go north"), "go north", "t#0", "t", "alfworld", 0)
    assert "verified" not in plain.to_json()
    verified = {"expert_delta": 0.0, "alternatives": [{"action": "open door", "verdict": "rejected", "delta": 0.0}]}
    label = JudgmentLabel(2, ("open door", "go north"), "go north", "t#0", "t", "alfworld", 0, verified=verified)
    raw = json.dumps(label.to_json())
    assert decode_judgment_label(raw).verified == verified
    assert judgment_reward("<answer>Action 2</answer>", raw, RewardConfig()).reward == 1.0

    trajectories = write_trajectories(tmp_path / "traj.jsonl", tasks=2, steps=2)
    out = tmp_path / "plain"
    assert main(["data", "build", "--input", str(trajectories), "--out", str(out)]) == 0
    assert all("verified" not in json.loads(r["label"]) for r in rows(out / "train.jsonl") + rows(out / "eval.jsonl"))
    assert "verification" not in json.loads((out / "manifest.json").read_text())


# ---- ScienceWorld: prefix replay --------------------------------------------------------------
@pytest.fixture(scope="module")
def sciworld_trajectory(tmp_path_factory) -> Path:
    """One collected ScienceWorld gold trajectory (admissible actions stored per step)."""
    path = tmp_path_factory.mktemp("sciworld") / "traj.jsonl"
    assert (
        main(["data", "collect", "--tasks", TASK, "--variations", "train:1", "--workers", "1", "--out", str(path)]) == 0
    )
    return path


@pytest.mark.slow
@requires_scienceworld
def test_scienceworld_pairs_are_verified_by_prefix_replay_and_dropped(sciworld_trajectory, tmp_path, capsys):
    (trajectory,) = _read(sciworld_trajectory)
    out = tmp_path / "verified"
    args = ["data", "build", "--input", str(sciworld_trajectory), "--eval-ratio", "0", "--verify-workers", "1"]
    assert main([*args, "--out", str(out), "--verify-alternatives"]) == 0
    assert (
        f"verified {len(trajectory.steps)} of {len(trajectory.steps)} pairs (prefix_replay)" in capsys.readouterr().out
    )
    manifest = json.loads((out / "manifest.json").read_text())
    verification = _check_counts(manifest)
    assert verification["mode"] == PREFIX_REPLAY and verification["verified_pairs"] == len(trajectory.steps)
    # a pair at step i replays i expert actions from a fresh start, then plays the alternative
    assert verification["env_steps"] >= sum(i + 1 for i in range(len(trajectory.steps)))
    assert verification["env_starts"] >= len(trajectory.steps) and verification["restores"] == 0
    labels = _labels(out)
    assert len(labels) == len(trajectory.steps)
    for label in labels:
        (alternative,) = label.verified["alternatives"]
        assert alternative["verdict"] in VERDICTS
        assert [alternative["action"]] == [c for c in label.candidates if c != label.expert]
    pairs = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    assert all(p["verified"]["alternatives"] for p in pairs)

    dropped = tmp_path / "dropped"
    assert main([*args, "--out", str(dropped), "--drop-unverified"]) == 0
    again = json.loads((dropped / "manifest.json").read_text())
    as_good = sum(1 for label in labels if _as_good(label.verified))
    assert again["drops"]["verification"] == {AS_GOOD: as_good, UNVERIFIED: 0}
    kept = _labels(dropped)
    assert len(kept) + as_good == len(labels) and not any(_as_good(label.verified) for label in kept)
    assert again["config"]["verify_alternatives"] and again["config"]["drop_unverified"]


def _as_good(verified: dict) -> bool:
    return any(
        a["verdict"] not in ("rejected", "task_lost") and a["delta"] >= verified["expert_delta"]
        for a in verified["alternatives"]
    )


@pytest.mark.slow
@requires_scienceworld
def test_scienceworld_planted_alternatives(sciworld_trajectory):
    """The expert's own action at a scoring step is progress (or the win) and as good as the expert's:
    --drop-unverified drops it; a nonsense command is rejected."""
    (trajectory,) = _read(sciworld_trajectory)
    states = states_from_trajectory(trajectory)
    scoring = next(i for i, step in enumerate(trajectory.steps) if step.reward)
    other = 1 if scoring == 0 else 0
    pairs = [
        ContrastPair(states[other], (NONSENSE,)),
        ContrastPair(states[scoring], (trajectory.steps[scoring].action,)),
    ]
    verified, stats = verify_pairs({trajectory.task_id: episode_of(trajectory)}, pairs, workers=1, progress=False)
    nonsense, planted = verified[states[other].key], verified[states[scoring].key]
    assert nonsense.alternatives[0].verdict == REJECTED and not nonsense.as_good_as_expert()
    assert planted.alternatives[0].verdict in ("progress", TASK_WON) and planted.alternatives[0].delta > 0
    assert planted.alternatives[0].delta == planted.expert_delta and planted.as_good_as_expert()
    drops: Counter[str] = Counter()
    assert _keep_verified(pairs, verified, drops) == [pairs[0]] and drops == {AS_GOOD: 1}
    assert stats.to_json()["verdicts"][REJECTED] == 1


# ---- ALFWorld: walk forward with snapshots ------------------------------------------------------
def _alfworld_trajectory(path: Path) -> Trajectory:
    """The planner's episode on the fixture game as a canonical trajectory naming its game file."""
    from openrlhf_act.envs.registry import make_env

    steps = []
    with make_env("alfworld", expert="planner") as env:
        env.load(EnvTask("alfworld", "pick_heat_then_place_in_recep", game_file=str(ALFWORLD_GAME)))
        current = env.reset()
        while not current.done:
            nxt = env.step(current.expert)
            steps.append(Step(current.observation, current.expert, None, current.admissible, nxt.reward, nxt.score))
            current = nxt
        trajectory = Trajectory(
            "pick_heat_then_place_in_recep/fixture",
            "alfworld",
            env.task_description,
            tuple(steps),
            Outcome(current.score, current.won),
            {"task_name": "pick_heat_then_place_in_recep", "game_file": str(ALFWORLD_GAME), "source": "planner"},
        )
    path.write_text(trajectory.to_line() + "\n")
    return trajectory


@pytest.mark.slow
@requires_alfworld_game
def test_alfworld_walks_forward_with_snapshots_and_agrees_with_prefix_replay(tmp_path):
    trajectory = _alfworld_trajectory(tmp_path / "traj.jsonl")
    assert len(trajectory.steps) == 6 and trajectory.outcome.success
    out = tmp_path / "act"
    config = BuildConfig(inputs=(str(tmp_path / "traj.jsonl"),), eval_ratio=0.0, verify_alternatives=True)
    result = build(config, out, progress=False)
    verification = _check_counts(result.manifest)
    assert verification["mode"] == WALK_FORWARD and verification["verified_pairs"] == 6
    # one start; the expert's 6 actions plus one step and one restore per alternative
    assert (verification["env_starts"], verification["env_steps"], verification["restores"]) == (1, 12, 6)
    assert all(label.verified for label in _labels(out))
    again = tmp_path / "again"
    build(config, again, progress=False)
    for name in ("train.jsonl", "eval.jsonl", "pairs.jsonl"):
        assert (out / name).read_bytes() == (again / name).read_bytes()

    states = states_from_trajectory(trajectory)
    last = len(states) - 1
    pairs = [
        ContrastPair(states[0], ("dance wildly",)),
        ContrastPair(states[2], ("go to fridge 1",)),
        ContrastPair(states[last], (trajectory.steps[last].action,)),
    ]
    episodes = {trajectory.task_id: episode_of(trajectory)}
    walked, walk_stats = verify_pairs(episodes, pairs, workers=1, progress=False)
    replayed, replay_stats = verify_pairs(episodes, pairs, workers=1, snapshots=False, progress=False)
    assert walked == replayed  # a restored snapshot is the state a replay reaches
    assert [walked[p.state.key].alternatives[0].verdict for p in pairs] == [REJECTED, "no_progress", TASK_WON]
    assert walked[states[last].key].expert_delta == 1.0 and walked[states[last].key].as_good_as_expert()
    assert walk_stats.to_json()["mode"] == WALK_FORWARD and replay_stats.to_json()["mode"] == PREFIX_REPLAY
    assert (walk_stats.starts, walk_stats.steps) == (1, 9) and (replay_stats.starts, replay_stats.steps) == (3, 10)
