"""``data replay``: ETO-shaped expert files (our own content) replayed in ScienceWorld and in the ALFWorld
fixture game; the replayed trajectories carry the environment's text, admissible actions and scores, and
``data export`` then makes, step for step, the prompts the evaluation harness shows (train/eval parity)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import data_tools.replay as replay_module
from data_tools.action_drift import map_drift
from data_tools.episode_match import detect_simplification, normalized_text, sciworld_task_name
from data_tools.replay import ReplayConfig, replay
from openrlhf_act.cli import main
from openrlhf_act.envs.base import EnvTask
from openrlhf_act.envs.registry import env_versions, expert_options
from openrlhf_act.errors import UsageError
from openrlhf_act.eval.episodes import EpisodeRunner
from openrlhf_act.eval.policies import ExpertPolicy
from openrlhf_act.files import read_jsonl
from openrlhf_act.schema import Step, Trajectory
from tests.conftest import requires_scienceworld
from tests.test_envs import _fake_alfworld_data, requires_alfworld_game
from tests.test_parity import exported

SCI_TASK = "find-non-living-thing"
ETO_FIND_NON_LIVING = 13  # ETO's task number for find-non-living-thing (taskname2id.json)
INSTRUCTION = "You are a helpful assistant doing science experiments in a text world. Answer with Thought/Action."
ALF_GAME_DIR = "valid_seen/pick_heat_then_place_in_recep-Potato-None-SinkBasin-13/trial_A"


def eto_record(record_id: str | None, task_text: str, actions: list[str], **extra) -> dict:
    """An ETO SFT record (role/content turns, instruction + OK preamble), with invented observations."""
    turns = [{"role": "user", "content": INSTRUCTION}, {"role": "assistant", "content": "OK"}]
    turns.append({"role": "user", "content": task_text})
    for i, action in enumerate(actions):
        turns.append({"role": "assistant", "content": f"Thought: step {i} of my plan.\nAction: {action}"})
        if i + 1 < len(actions):
            turns.append({"role": "user", "content": f"Observation: recorded reply {i}."})
    return {**({"id": record_id} if record_id else {}), **extra, "conversations": turns}


def test_drift_rules_map_only_what_the_environment_admits():
    admissible = ["go to sinkbasin 1", "move potato 2 to sinkbasin 1"]
    assert map_drift("alfworld", "put potato 2 in/on sinkbasin 1", admissible) == (
        "move potato 2 to sinkbasin 1",
        "alfworld_put_to_move",
    )
    assert map_drift("alfworld", "put potato 2 in sinkbasin 1", admissible)[1] == "alfworld_put_to_move"
    assert map_drift("alfworld", "Go  to sinkbasin 1", admissible) == ("go to sinkbasin 1", "spacing_and_case")
    # not admitted after rewriting, no admissible list, or admitted as written: played as recorded
    assert map_drift("alfworld", "put potato 2 in fridge 1", admissible) == ("put potato 2 in fridge 1", None)
    assert map_drift("alfworld", "put potato 2 in sinkbasin 1", None) == ("put potato 2 in sinkbasin 1", None)
    assert map_drift("scienceworld", "put potato 2 in sinkbasin 1", admissible)[1] is None


def test_names_texts_and_simplification():
    assert sciworld_task_name("task-2-power-component-(renewable-vs-nonrenewable-energy)") == (
        "power-component-renewable-vs-nonrenewable-energy"
    )
    assert sciworld_task_name("task-9-mendellian-genetics-(known-plant)") == "mendelian-genetics-known-plant"
    assert normalized_text("Your task is to:  Put a mug in the sink.") == "put a mug in the sink"
    teleporting = Trajectory("t", "scienceworld", "x", (Step("o", "open door"), Step("o", "teleport to kitchen")))
    walking = Trajectory("w", "scienceworld", "x", (Step("o", "go to kitchen"),))
    assert detect_simplification([walking, teleporting]) == "easy"
    assert detect_simplification([walking]) == ""
    with pytest.raises(UsageError, match="scienceworld, alfworld"):
        ReplayConfig(env="webshop", inputs=("x",))


def gold(task: str, simplification: str = "") -> tuple[int, str, list[str]]:
    from openrlhf_act.envs.scienceworld import ScienceWorld

    with ScienceWorld(gold_path=True, simplification=simplification) as env:
        variation = env.variations(task, "train")[0]
        env.load(EnvTask("scienceworld", task, variation))
        env.reset()
        return variation, env.task_description, env.expert_actions()


@pytest.mark.slow
@requires_scienceworld
def test_scienceworld_replay_matches_by_id_and_text_reports_rejects_and_resumes(tmp_path, monkeypatch):
    variation, text, actions = gold(SCI_TASK)
    records = [
        eto_record(f"{ETO_FIND_NON_LIVING}_{variation}", text, actions),
        eto_record("sciworld_7", text, actions),  # an id that names no task: found by its task text
        eto_record(f"{SCI_TASK}_{variation}", text, [actions[0], "juggle the kitchen", *actions[1:]]),
        eto_record("sciworld_8", "Your task is to tame a dragon.", actions),
    ]
    source = tmp_path / "sciworld_sft.json"
    source.write_text(json.dumps(records))
    out = tmp_path / "replayed.jsonl"
    config = ReplayConfig(env="scienceworld", inputs=(str(source),), workers=1)

    # an interruption after the first trajectory: it is kept in the partial file and not played again
    real_play, calls = replay_module._play, []

    def interrupted(session, job):
        calls.append(job.key)
        if len(calls) == 2:
            raise RuntimeError("power cut")
        return real_play(session, job)

    monkeypatch.setattr(replay_module, "_play", interrupted)
    with pytest.raises(RuntimeError, match="power cut"):
        replay(config, out, progress=False)
    assert not out.exists() and (tmp_path / "replayed.jsonl.partial").is_file()
    monkeypatch.setattr(replay_module, "_play", real_play)
    stats = replay(config, out, progress=False)
    assert stats.resumed == 2  # the first trajectory and the unmatched one (dropped before playing)
    assert not (tmp_path / "replayed.jsonl.partial").exists()

    kept = list(read_jsonl(out))
    assert [t["meta"]["matched_by"] for t in kept] == ["id", "text"]
    for trajectory in kept:
        assert trajectory["task_id"] == f"{SCI_TASK}/v{variation}" and trajectory["task"] == text
        assert trajectory["outcome"] == {"score": 100.0, "success": True}
        steps = trajectory["steps"]
        assert [s["action"] for s in steps] == actions
        assert all(s["admissible"] and s["action"] in s["admissible"] for s in steps[:1])
        assert steps[0]["observation"].startswith("This room is called")  # the environment's text
        assert all("recorded reply" not in s["observation"] for s in steps)
        assert [s["score"] for s in steps][-1] == 100.0 and steps[0]["thought"] == "step 0 of my plan."
        assert trajectory["meta"] | {"matched_by": None} == {
            "task_name": SCI_TASK,
            "variation": variation,
            "split": "train",
            "simplification": "",
            "source": "replay",
            "source_id": trajectory["meta"]["source_id"],
            "matched_by": None,
            "drifts": {},
            "source_format": "eto",
        }
    rejects = {r["task_id"]: r for r in read_jsonl(tmp_path / "replayed.rejects.jsonl")}
    assert rejects[f"{SCI_TASK}_{variation}"]["drop"] == "action_rejected"
    assert rejects[f"{SCI_TASK}_{variation}"]["step"] == 1 and "juggle" in rejects[f"{SCI_TASK}_{variation}"]["error"]
    assert rejects["sciworld_8"]["drop"] == "unknown_task_text"
    manifest = json.loads((tmp_path / "replayed.manifest.json").read_text())
    assert manifest["counts"]["kept"] == 2 and manifest["counts"]["won"] == 2
    assert manifest["counts"]["dropped"] == {"action_rejected": 1, "unknown_task_text": 1}
    assert manifest["simplification"] == {"detected": True, "value": ""}
    assert manifest["env_versions"] == env_versions("scienceworld")

    # parity: the exported next-action prompts are what the harness shows at every step
    (first,) = [t for t in kept if t["meta"]["matched_by"] == "id"]
    single = tmp_path / "one.jsonl"
    single.write_text(json.dumps(first) + "\n")
    rows, _ = exported(single, tmp_path / "export")
    task = EnvTask("scienceworld", SCI_TASK, variation, split="train")
    runner = EpisodeRunner(
        "scienceworld", [task], ExpertPolicy(), tmp_path / "eval", workers=1, env_options=expert_options("scienceworld")
    )
    runner.run()
    (record,) = read_jsonl(tmp_path / "eval" / "episodes.jsonl")
    assert record["won"], record.get("error")
    assert [s["prompt"] for s in record["transcript"]] == [r["prompt"][-1]["content"] for r in rows]


@requires_scienceworld
def test_a_replay_that_keeps_nothing_exits_2_and_writes_no_output(tmp_path, capsys):
    _, _, actions = gold(SCI_TASK)
    source = tmp_path / "sciworld_sft.json"
    source.write_text(json.dumps([eto_record("sciworld_8", "Your task is to tame a dragon.", actions)]))
    out = tmp_path / "replayed.jsonl"
    argv = ["data", "replay", "--env", "scienceworld", "--input", str(source), "--out", str(out), "--workers", "1"]
    assert main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no trajectory could be replayed: all 1 dropped (unknown_task_text 1)" in err and "rejects.jsonl" in err
    assert not out.exists() and not (tmp_path / "replayed.jsonl.partial").exists()
    (reject,) = read_jsonl(tmp_path / "replayed.rejects.jsonl")
    assert reject["drop"] == "unknown_task_text"


@pytest.mark.slow
@requires_alfworld_game
def test_alfworld_replay_maps_drift_finds_games_and_matches_the_harness(tmp_path, monkeypatch):
    from openrlhf_act.envs.alfworld import ALFWorld

    _fake_alfworld_data(tmp_path / "alfworld")
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path / "alfworld"))
    game = tmp_path / "alfworld" / "json_2.1.1" / ALF_GAME_DIR / "game.tw-pddl"
    with ALFWorld(expert="planner") as env:
        env.load(EnvTask("alfworld", "pick_heat_then_place_in_recep", game_file=str(game)))
        step, plan = env.reset(), []
        room, task = step.observation, env.task_description
        while not step.done:
            plan.append(step.expert)
            step = env.step(step.expert)
    assert plan[-1].startswith("move ")
    recorded = [*plan[:-1], plan[-1].replace("move ", "put ").replace(" to ", " in/on ")]  # ETO's older wording
    first = f"{room}\n\nYour task is to: {task}"
    records = [
        eto_record("alfworld_0", first, recorded, game_file=f"data/json_2.1.1/{ALF_GAME_DIR}"),
        eto_record("alfworld_1", first, recorded),  # no game file: found by its task text and room
        eto_record("alfworld_2", first, recorded, game_file="data/json_2.1.1/train/pick_two_obj-X-None-Y-1/trial_Z"),
        eto_record("alfworld_3", first, ["go to the moon", *recorded], game_file=f"data/json_2.1.1/{ALF_GAME_DIR}"),
    ]
    source = tmp_path / "alfworld_sft.json"
    source.write_text(json.dumps(records))
    out = tmp_path / "replayed.jsonl"
    argv = ["data", "replay", "--env", "alfworld", "--input", str(source), "--out", str(out), "--workers", "1"]
    assert main([*argv, "--no-progress"]) == 0

    kept = list(read_jsonl(out))
    assert [t["meta"]["source_id"] for t in kept] == ["alfworld_0", "alfworld_1"]
    for trajectory in kept:
        assert [s["action"] for s in trajectory["steps"]] == plan
        assert trajectory["meta"]["drifts"] == {"alfworld_put_to_move": 1}
        assert trajectory["task"] == task and trajectory["steps"][0]["observation"] == room
        assert all(s["action"] in s["admissible"] for s in trajectory["steps"])
        assert trajectory["outcome"] == {"score": 1.0, "success": True}
        assert Path(trajectory["meta"]["game_file"]) == game.resolve()
        assert trajectory["meta"]["split"] == "valid_seen"
    rejects = {r["task_id"]: r for r in read_jsonl(tmp_path / "replayed.rejects.jsonl")}
    assert rejects["alfworld_2"]["drop"] == "game_not_found" and "pick_two_obj" in rejects["alfworld_2"]["error"]
    assert rejects["alfworld_3"]["drop"] == "action_rejected" and rejects["alfworld_3"]["step"] == 0
    manifest = json.loads((tmp_path / "replayed.manifest.json").read_text())
    assert manifest["counts"]["drifts"] == {"alfworld_put_to_move": 2}
    assert manifest["counts"]["matched_by"] == {"meta": 1, "text": 1}

    # parity with the admissible actions shown: export and harness prompts are byte-identical
    single = tmp_path / "one.jsonl"
    single.write_text(json.dumps(kept[0]) + "\n")
    rows, _ = exported(single, tmp_path / "export")
    assert all("move potato 2 to sinkbasin 1" in r["prompt"][-1]["content"] for r in rows[-1:])
    env_task = EnvTask("alfworld", "pick_heat_then_place_in_recep", game_file=str(game.resolve()))
    runner = EpisodeRunner(
        "alfworld", [env_task], ExpertPolicy(), tmp_path / "eval", workers=1, env_options=expert_options("alfworld")
    )
    runner.run()
    (record,) = read_jsonl(tmp_path / "eval" / "episodes.jsonl")
    assert record["won"], record.get("error")
    assert [s["prompt"] for s in record["transcript"]] == [r["prompt"][-1]["content"] for r in rows]

    # the same with fewer admissible actions allowed in a prompt (the lists are then left out)
    short, _ = exported(single, tmp_path / "export-short", "--max-admissible-in-prompt", "5")
    assert [r["prompt"] for r in short] != [r["prompt"] for r in rows]
    runner = EpisodeRunner(
        "alfworld",
        [env_task],
        ExpertPolicy(),
        tmp_path / "eval-short",
        workers=1,
        env_options=expert_options("alfworld"),
        max_admissible=5,
    )
    runner.run()
    (record,) = read_jsonl(tmp_path / "eval-short" / "episodes.jsonl")
    assert [s["prompt"] for s in record["transcript"]] == [r["prompt"][-1]["content"] for r in short]


@pytest.mark.slow
@requires_alfworld_game
def test_a_simulator_dying_mid_replay_loses_nothing_and_is_replayed_on_resume(tmp_path, monkeypatch):
    import os
    import signal

    from data_tools.replay import _play

    _fake_alfworld_data(tmp_path / "alfworld")
    game = f"data/json_2.1.1/{ALF_GAME_DIR}"
    plan = ["go to countertop 2", "take potato 2 from countertop 2", "go to microwave 1"]
    records = [eto_record(f"alfworld_{i}", "put a hot potato in sinkbasin.", plan, game_file=game) for i in range(2)]
    source = tmp_path / "alfworld_sft.json"
    source.write_text(json.dumps(records))
    config = ReplayConfig(env="alfworld", inputs=(str(source),), data_dir=str(tmp_path / "alfworld"), workers=1)

    class Dying:
        """The simulator process of alfworld_1 is killed at its second step, on every attempt."""

        def __init__(self, session):
            self.session, self.worker, self.steps = session, session.worker, 0

        def start(self, task):
            return self.session.start(task)

        def step(self, action):
            self.steps += 1
            if self.steps == 2:
                os.kill(self.worker.pid, signal.SIGKILL)
            return self.session.step(action)

    def play(session, job):
        return _play(Dying(session) if job.trajectory.task_id == "alfworld_1" else session, job)

    monkeypatch.setattr(replay_module, "_play", play)
    out = tmp_path / "replayed.jsonl"
    stats = replay(config, out, progress=False)
    assert stats.kept == 1 and stats.dropped == {"env_error": 1}
    (reject,) = read_jsonl(tmp_path / "replayed.rejects.jsonl")
    assert reject["task_id"] == "alfworld_1" and "step 1 ('take potato 2 from countertop 2')" in reject["error"]
    assert (tmp_path / "replayed.jsonl.partial").is_file()  # kept, so the failed one is played again

    monkeypatch.setattr(replay_module, "_play", _play)
    stats = replay(config, out, progress=False)
    assert stats.resumed == 1 and stats.kept == 2 and not stats.dropped
    assert [t["meta"]["source_id"] for t in read_jsonl(out)] == ["alfworld_0", "alfworld_1"]
