"""Admissible actions that are actions: commands ScienceWorld's admissible lists offer and its parser rejects
(objects in the closed cupboard, the drawer) are never alternatives, and verification rejects them unplayed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_tools.verify import REJECTED, JobResult, known_rejection
from openrlhf_act.cli import main
from openrlhf_act.envs.scienceworld import parser_rejection
from openrlhf_act.schema import Outcome, Step, Trajectory, decode_judgment_label
from tests.conftest import requires_scienceworld

UNPARSEABLE = ["open drawer", "move drawer to table", "move cup containing red paint in cupboard to table"]


def test_the_patterns_name_the_rejections_and_spare_gold_like_commands():
    assert [parser_rejection(c) for c in UNPARSEABLE] == ["drawer", "drawer", "in_cupboard"]
    spared = ["open cupboard", "move cup containing red paint in large cupboard to table", "look at drawers"]
    spared += [
        "move apple seed in seed jar to flower pot 3",
        "go to kitchen",
        "0",
        "connect agent to drawer in counter",
    ]
    assert [c for c in spared if parser_rejection(c) is not None] == []


def test_verification_rejects_them_unplayed_in_scienceworld_only():
    result = JobResult()
    verdict = known_rejection("scienceworld", "open drawer", result)
    assert verdict is not None and verdict.verdict == REJECTED and result.unplayed == {"drawer": 1}
    assert known_rejection("alfworld", "open drawer 1", result) is None
    assert known_rejection("scienceworld", "open cupboard", result) is None


def _trajectories(path: Path, env: str) -> Path:
    """Each state offers one playable command besides the expert's and the three non-actions."""
    lines = []
    for t in range(6):
        steps = tuple(
            Step(f"Room {i}.", f"go to room {i + 1}", admissible=(f"go to room {i + 1}", "look around", *UNPARSEABLE))
            for i in range(4)
        )
        lines.append(Trajectory(f"fam{t}/v{t}", env, "Walk.", steps, Outcome(100, True)).to_line())
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("env", ["scienceworld", "alfworld"])
def test_the_admissible_sampler_offers_no_non_action_and_the_manifest_counts_them(tmp_path, env):
    out = tmp_path / "act"
    args = ["data", "build", "--input", str(_trajectories(tmp_path / "t.jsonl", env)), "--out", str(out)]
    assert main([*args, "--sampler", "admissible", "--eval-ratio", "0.34", "--rounds", "8"]) == 0
    alternatives = [
        c
        for split in ("train", "eval")
        for row in map(json.loads, (out / f"{split}.jsonl").read_text().splitlines())
        for c in decode_judgment_label(row["label"]).candidates
        if not c.startswith("go to room")
    ]
    rejected = json.loads((out / "manifest.json").read_text())["drops"]["alternatives"]["rejected_completions"]
    if env == "scienceworld":
        assert alternatives and set(alternatives) == {"look around"}
        assert rejected["parser_rejects"] > 0
    else:  # ALFWorld's drawers are real
        assert set(alternatives) > {"look around", "open drawer"} and "parser_rejects" not in rejected


@pytest.mark.slow
@requires_scienceworld
def test_scienceworld_rejects_what_the_patterns_name():
    """The real parser: at the states of a gold path, every admissible command the patterns name is answered
    "No known action matches that input." (a rejected command leaves the state as it was), and the gold path
    itself never matches one."""
    from openrlhf_act.envs.base import EnvTask
    from openrlhf_act.envs.scienceworld import ScienceWorld

    env = ScienceWorld(admissible=True, gold_path=True)
    try:
        env.load(EnvTask("scienceworld", "find-non-living-thing", variation=1))
        step = env.reset()
        gold = env.expert_actions() or []
        played: dict[str, bool] = {}
        for action in gold[:8]:
            named = [c for c in step.admissible or () if parser_rejection(c) is not None and c not in played]
            for command in named[:3]:
                played[command] = env.step(command).valid
            step = env.step(action)
            assert step.valid and parser_rejection(action) is None
        assert {parser_rejection(c) for c in played} == {"drawer", "in_cupboard"}, "both patterns were met"
        assert [c for c, valid in played.items() if valid] == []
    finally:
        env.close()


@pytest.mark.slow
@requires_scienceworld
def test_verification_gives_the_verdict_playing_gives_without_playing(tmp_path, monkeypatch):
    """A collected gold trajectory: alternatives the patterns name are rejected unplayed (counted, fewer
    environment steps), and playing them instead gives the same verdicts."""
    from data_tools.readers import read_trajectories
    from data_tools.verify import episode_of, verify_pairs
    from openrlhf_act.envs.scienceworld import ScienceWorld
    from openrlhf_act.schema import ContrastPair
    from openrlhf_act.states import states_from_trajectory

    path = tmp_path / "traj.jsonl"
    collect = ["data", "collect", "--tasks", "find-non-living-thing", "--variations", "1", "--workers", "1"]
    assert main([*collect, "--out", str(path)]) == 0
    (trajectory,) = read_trajectories([str(path)], "canonical")
    states = states_from_trajectory(trajectory)
    named = [(s, [c for c in s.admissible or () if parser_rejection(c)]) for s in states[:4]]
    pairs = [ContrastPair(state, (commands[0], "look around")) for state, commands in named if commands]
    assert len(pairs) >= 2, "the first states offer non-actions"
    episodes = {trajectory.task_id: episode_of(trajectory)}
    unplayed, stats = verify_pairs(episodes, pairs, workers=1, progress=False)
    monkeypatch.setattr(ScienceWorld, "rejected_command", classmethod(lambda cls, command: None))
    played, played_stats = verify_pairs(episodes, pairs, workers=1, progress=False)
    assert unplayed == played and all(v.alternatives[0].verdict == REJECTED for v in played.values())
    assert sum(stats.unplayed.values()) == len(pairs) and not played_stats.unplayed
    assert stats.steps < played_stats.steps
