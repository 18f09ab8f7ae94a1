"""Trajectory readers: every public format, auto detection, bad input, skip mode, streaming, round trip.

Fixtures are written into ``tmp_path`` and follow the shape of the public data (ETO's
``data/*_sft.json``, AgentGym's AgentTraj, TextWorld/ALFWorld logs); their texts are abridged. The files in
``tests/fixtures/real_shapes/`` copy the shapes of published trajectory files (ETO, IPR, ReAct, Reflexion,
AgentInstruct, FireAct) with invented content; their tests check the exact states and actions read.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_tools.readers import FORMATS, ReaderStats, RejectSink, detect_format, read_trajectories
from data_tools.readers.expert import split_thought_action
from openrlhf_act.errors import DataError
from openrlhf_act.schema import Outcome, Step, Trajectory

ALFWORLD_INSTRUCTION = (
    "Interact with a household to solve a task. Imagine you are an intelligent agent in a household "
    "environment ... Your response should use the following format:\n\nThought: <your thoughts>\n"
    "Action: <your next action>"
)
SCIWORLD_INSTRUCTION = "You are a helpful assistant to do some scientific experiment in an environment.\n..."
WEBSHOP_INSTRUCTION = "You are web shopping.\nI will give you instructions about what to do.\n..."
ALFWORLD_ROOM = (
    "You are in the middle of a room. Looking quickly around you, you see a cabinet 4, a cabinet 3, "
    "a cabinet 2, a cabinet 1, a countertop 1, a garbagecan 1, a sinkbasin 1, and a toilet 1."
)
BOIL_TASK = (
    "Your task is to boil water. For compounds without a boiling point, combining the substance with "
    "something of a different state may be necessary. First, focus on the substance. Then, take actions "
    "that will cause it to change its state of matter."
)
WEBSHOP_PAGE = (
    "WebShop [SEP] Instruction: [SEP] i need a long lasting 6.76 fl oz bottle of l'eau d'issey, and price "
    "lower than 100.00 dollars [SEP] Search"
)


def human(value: str) -> dict:
    return {"from": "human", "value": value}


def gpt(value: str) -> dict:
    return {"from": "gpt", "value": value}


def eto_alfworld(record_id: str = "pick_and_place_simple-SprayBottle-None-Toilet-422") -> dict:
    return {
        "id": record_id,
        "conversations": [
            human(ALFWORLD_INSTRUCTION),
            gpt("OK"),
            human(f"{ALFWORLD_ROOM}\nYour task is to: put some spraybottle on toilet."),
            gpt("Thought: To solve the task, I need to find a spraybottle.\nAction: go to cabinet 1"),
            human("Observation: On the cabinet 1, you see a cloth 1, a soapbar 1, and a spraybottle 2."),
            # ETO's own ICL file mixes "role"/"content" with "from"/"value": tolerated
            {"role": "assistant", "content": "Thought: Found it.\nAction: take spraybottle 2 from cabinet 1"},
            human("Observation: You pick up the spraybottle 2 from the cabinet 1."),
            gpt("Action: go to toilet 1"),
            human("Observation: On the toilet 1, you see a soapbottle 1."),
            gpt("Thought: Put it down.\nAction: put spraybottle 2 in/on toilet 1"),
            human("Observation: You put the spraybottle 2 in/on the toilet 1."),
        ],
    }


def eto_webshop() -> dict:
    return {
        "id": 17,
        "reward": 0.75,
        "source": "human",
        "conversations": [
            human(WEBSHOP_INSTRUCTION),
            gpt("OK"),
            human(WEBSHOP_PAGE),
            gpt("Thought: I think I should search for the perfume.\nAction: search[l'eau d'issey 6.76 fl oz]"),
            human(
                "Observation:\n[Back to Search] [SEP] Page 1 (Total results: 50) [SEP] [Next >] [SEP] B000VOHH8I "
                "[SEP] L'eau D'issey By Issey Miyake for Men Eau De Toilette Spray, 6.7 Fl Oz Bottle [SEP] $64.98"
            ),
            gpt("Thought: The first item fits.\nAction: click[B000VOHH8I]"),
            human("Observation:\n[Back to Search] [SEP] [< Prev] [SEP] size [SEP] 6.76 fl oz [SEP] Buy Now"),
            gpt("Thought: Buy it.\nAction: click[Buy Now]"),
        ],
    }


def eto_sciworld() -> dict:
    return {
        "id": "1-1_12",
        "conversations": [
            human(SCIWORLD_INSTRUCTION),
            gpt("OK"),
            human(BOIL_TASK),
            gpt("Thought: I need water and a heat source; the kitchen has both.\nAction: teleport to kitchen"),
            human("Observation: You teleport to the kitchen."),
            gpt("Thought: Look for a pot.\nAction: look around"),
            human("Observation: This room is called the kitchen. In it, you see: \n\tthe agent\n\ta stove"),
        ],
    }


def agentgym_alfworld() -> dict:
    return {
        "item_id": "alfworld_3",
        "conversations": [
            {"from": "human", "loss": None, "value": ALFWORLD_INSTRUCTION},
            {
                "from": "gpt",
                "loss": False,
                "value": "OK. I'll follow your instructions and try my best to solve the task.",
            },
            {
                "from": "human",
                "loss": None,
                "value": f"{ALFWORLD_ROOM}\nYour task is to: look at bowl under the desklamp.\n"
                "AVAILABLE ACTIONS: go to cabinet 1,go to countertop 1,inventory,look",
            },
            {
                "from": "gpt",
                "loss": True,
                "value": "Thought:\nThe bowl may be on the countertop.\n\nAction:\ngo to countertop 1",
            },
            {
                "from": "human",
                "loss": None,
                "value": "On the countertop 1, you see a bowl 1, and a desklamp 1.\n"
                "AVAILABLE ACTIONS: take bowl 1 from countertop 1,use desklamp 1,go to cabinet 1",
            },
            {"from": "gpt", "loss": True, "value": "Action:\ntake bowl 1 from countertop 1"},
            {
                "from": "human",
                "loss": None,
                "value": "You pick up the bowl 1 from the countertop 1.\nAVAILABLE ACTIONS: look",
            },
        ],
    }


def agentgym_record(item_id: str, opening: str) -> dict:
    return {
        "item_id": item_id,
        "conversations": [
            {"from": "human", "loss": None, "value": "instruction"},
            {"from": "gpt", "loss": False, "value": "Ok."},
            {"from": "human", "loss": None, "value": opening},
            {"from": "gpt", "loss": True, "value": "Thought:\nstart.\n\nAction:\nlook around"},
        ],
    }


def openai_record() -> dict:
    return {
        "id": "boil/v3",
        "env": "ScienceWorld",
        "score": 100,
        "success": True,
        "messages": [
            {"role": "system", "content": "You are an agent in ScienceWorld."},
            {"role": "user", "content": BOIL_TASK + "\nThis room is called the hallway."},
            {"role": "assistant", "content": "<think>Kitchen first.</think>\nAction: teleport to kitchen"},
            {"role": "user", "content": [{"type": "text", "text": "You teleport to the kitchen."}]},
            {"role": "assistant", "content": "look around"},
            {"role": "user", "content": "This room is called the kitchen."},
        ],
    }


def sharegpt_record() -> dict:
    return {
        "conversations": [
            {"from": "system", "value": "You play a text game."},
            human("Task: find the brass key\nYou are in a dark cellar. There is a rusty box here."),
            gpt("Thought: The box might hold it.\nAction: open box"),
            human("You open the box. Inside is a brass key."),
            gpt("Action: take brass key"),
        ]
    }


REACT_LOG = """-= Welcome to TextWorld, ALFRED! =-

You are in the middle of a room. Looking quickly around you, you see a fridge 1, a microwave 1, and a sinkbasin 1.

Your task is to: heat some egg and put it in sinkbasin.
> think: First I need to find an egg. It is probably in the fridge.
OK.
> go to fridge 1
The fridge 1 is closed.
> open fridge 1
You open the fridge 1. The fridge 1 is open. In it, you see a egg 1.
AVAILABLE ACTIONS: take egg 1 from fridge 1,close fridge 1
> take egg 1 from fridge 1
You pick up the egg 1 from the fridge 1.
Score: 1
Success: true

=== episode cellar-7 ===

Task: find the brass key
Observation: You are in a dark cellar.
Thought: The box might hold it.
Action: open box
Observation: You open the box.
Action: take brass key
Observation: Taken.
"""


def write_json(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def read_all(path: Path, fmt: str = "auto", **kwargs) -> list[Trajectory]:
    return list(read_trajectories([path], fmt, **kwargs))


# --- the formats -------------------------------------------------------------------------------------


def test_eto_alfworld_array(tmp_path):
    path = write_json(tmp_path / "alfworld_sft.json", [eto_alfworld(), eto_alfworld("second")])
    first, second = read_all(path)
    assert first.task_id == "pick_and_place_simple-SprayBottle-None-Toilet-422" and second.task_id == "second"
    assert first.env == "alfworld"
    assert first.task == "put some spraybottle on toilet."
    assert [s.action for s in first.steps] == [
        "go to cabinet 1",
        "take spraybottle 2 from cabinet 1",
        "go to toilet 1",
        "put spraybottle 2 in/on toilet 1",
    ]
    assert first.steps[0].observation.startswith("You are in the middle of a room.")
    assert first.steps[0].thought == "To solve the task, I need to find a spraybottle."
    assert first.steps[1].observation == "On the cabinet 1, you see a cloth 1, a soapbar 1, and a spraybottle 2."
    assert first.steps[2].thought is None
    assert first.meta == {"format": "eto"}
    assert all(s.action != "OK" and "household" not in s.observation for s in first.steps)


def test_eto_webshop_task_outcome_and_observation_prefix(tmp_path):
    (traj,) = read_all(write_json(tmp_path / "webshop_sft.json", [eto_webshop()]))
    assert traj.task_id == "17" and traj.env == "webshop"
    assert traj.task == "i need a long lasting 6.76 fl oz bottle of l'eau d'issey, and price lower than 100.00 dollars"
    assert traj.outcome == Outcome(score=0.75)
    assert traj.steps[0].observation == WEBSHOP_PAGE
    assert traj.steps[1].observation.startswith("[Back to Search] [SEP] Page 1")
    assert traj.steps[2].action == "click[Buy Now]"


def test_eto_sciworld_task_only_opening(tmp_path):
    (traj,) = read_all(write_json(tmp_path / "sciworld_sft.json", [eto_sciworld()]))
    assert traj.env == "scienceworld" and traj.task_id == "1-1_12"
    assert traj.task == BOIL_TASK
    assert traj.steps[0].observation == BOIL_TASK
    assert traj.steps[1].observation == "You teleport to the kitchen."


def test_eto_in_context_examples_are_not_states(tmp_path):
    example = [
        human(f"{ALFWORLD_ROOM}\n\nYour task is to: put a toiletpaper in toiletpaperhanger."),
        gpt("Thought: Find toilet paper.\nAction: go to toilet 1"),
        human("Observation: On the toilet 1, you see a toiletpaper 1."),
        gpt("Thought: Take it.\nAction: take toiletpaper 1 from toilet 1"),
    ]
    real = eto_alfworld()["conversations"][2:]
    record = {"conversations": [human(ALFWORLD_INSTRUCTION), gpt("OK"), *example, *real]}
    path = write_jsonl(tmp_path / "eval_log.jsonl", [record])
    assert detect_format(path) == "eto"
    (traj,) = read_all(path)
    assert traj.task == "put some spraybottle on toilet."
    assert traj.steps[0].action == "go to cabinet 1" and len(traj.steps) == 4
    assert traj.task_id == "eval_log:0"


def test_eto_one_prompt_form_keeps_only_the_task(tmp_path):
    prompt = (
        f"{ALFWORLD_INSTRUCTION}\n---\nHere is an example.\n{ALFWORLD_ROOM}\nYour task is to: put a cup in sink.\n"
        "Thought: go.\nAction: go to sink 1\n---\n\nNow, it's your turn and here is the task.\n"
        f"{ALFWORLD_ROOM}\nYour task is to: put some spraybottle on toilet."
    )
    record = {"id": "x", "conversations": [human(prompt), gpt("Thought: search.\nAction: go to cabinet 1")]}
    path = write_jsonl(tmp_path / "alfworld_log.jsonl", [record])
    assert detect_format(path) == "eto"
    (traj,) = read_all(path)
    assert traj.task == "put some spraybottle on toilet."
    assert traj.steps[0].observation == f"{ALFWORLD_ROOM}\nYour task is to: put some spraybottle on toilet."


def test_agentgym_preamble_and_admissible_actions(tmp_path):
    (traj,) = read_all(write_jsonl(tmp_path / "AgentTraj-L.jsonl", [agentgym_alfworld()]))
    assert traj.task_id == "alfworld_3" and traj.env == "alfworld"
    assert traj.task == "look at bowl under the desklamp."
    first, second = traj.steps
    assert first.admissible == ("go to cabinet 1", "go to countertop 1", "inventory", "look")
    assert "AVAILABLE ACTIONS" not in first.observation
    assert first.observation.endswith("Your task is to: look at bowl under the desklamp.")
    assert first.thought == "The bowl may be on the countertop." and first.action == "go to countertop 1"
    assert second.admissible == ("take bowl 1 from countertop 1", "use desklamp 1", "go to cabinet 1")
    assert second.thought is None and second.action == "take bowl 1 from countertop 1"


@pytest.mark.parametrize(
    ("item_id", "opening", "env", "task"),
    [
        ("sciworld_12", f"{BOIL_TASK}\nThis room is called the hallway.", "scienceworld", BOIL_TASK),
        (
            "webshop_5238",
            WEBSHOP_PAGE,
            "webshop",
            "i need a long lasting 6.76 fl oz bottle of l'eau d'issey, and price lower than 100.00 dollars",
        ),
        ("babyai_7", "Your goal: go to the red ball\nIn front of you there is a wall.", "babyai", None),
    ],
)
def test_agentgym_env_from_item_id(tmp_path, item_id, opening, env, task):
    (traj,) = read_all(write_jsonl(tmp_path / "traj.jsonl", [agentgym_record(item_id, opening)]))
    assert traj.env == env
    assert traj.task == (task or opening)
    (overridden,) = read_all(tmp_path / "traj.jsonl", env="alfworld")
    assert overridden.env == "alfworld"


def test_openai_messages(tmp_path):
    (traj,) = read_all(write_jsonl(tmp_path / "chats.jsonl", [openai_record()]))
    assert (traj.task_id, traj.env, traj.task) == ("boil/v3", "scienceworld", BOIL_TASK)
    assert traj.outcome == Outcome(score=100.0, success=True)
    assert [(s.thought, s.action) for s in traj.steps] == [
        ("Kitchen first.", "teleport to kitchen"),
        (None, "look around"),
    ]
    assert traj.steps[1].observation == "You teleport to the kitchen."


def test_sharegpt_conversations(tmp_path):
    path = write_jsonl(tmp_path / "games.jsonl", [sharegpt_record()])
    (traj,) = read_all(path, env="textworld")
    assert (traj.task_id, traj.env, traj.task) == ("games:0", "textworld", "find the brass key")
    assert [s.action for s in traj.steps] == ["open box", "take brass key"]
    assert traj.steps[1].observation == "You open the box. Inside is a brass key."
    (inferred,) = read_all(path)
    assert inferred.env == "unknown"


def test_react_transcript_episodes(tmp_path):
    path = tmp_path / "alfworld_run.log"
    path.write_text(REACT_LOG, encoding="utf-8")
    first, second = read_all(path)
    assert (first.task_id, first.env, first.task) == (
        "alfworld_run:0",
        "alfworld",
        "heat some egg and put it in sinkbasin.",
    )
    assert [s.action for s in first.steps] == ["go to fridge 1", "open fridge 1", "take egg 1 from fridge 1"]
    assert first.steps[0].thought == "First I need to find an egg. It is probably in the fridge."
    assert "Welcome" not in first.steps[0].observation and "OK." not in first.steps[1].observation
    assert first.steps[1].observation == "The fridge 1 is closed."
    assert first.steps[2].admissible == ("take egg 1 from fridge 1", "close fridge 1")
    assert first.outcome == Outcome(score=1.0, success=True)
    assert (second.task_id, second.task) == ("cellar-7", "find the brass key")
    assert second.steps[0].thought == "The box might hold it."
    assert second.steps[1].observation == "You open the box."


def test_react_bare_prompt_think_answer_and_empty_action(tmp_path):
    path = tmp_path / "run.txt"
    path.write_text("Task: t\nroom\n> think: plan\nThe lamp flickers.\n> look\nnothing\n>\n", encoding="utf-8")
    (traj,) = read_all(path)
    assert [(s.observation, s.action, s.thought) for s in traj.steps] == [
        ("Task: t\nroom\nThe lamp flickers.", "look", "plan")
    ]
    path.write_text("Task: t\nroom\n> look\nnothing\nAction:\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"run\.txt:1: line 5: empty action"):
        read_all(path)


def test_react_marker_only_splits_when_alone_between_blank_lines(tmp_path):
    path = tmp_path / "one.txt"
    path.write_text("Task: t\nroom\n=== episode x ===\n> look\nnothing\n", encoding="utf-8")
    (traj,) = read_all(path)
    assert traj.steps[0].observation == "Task: t\nroom\n=== episode x ==="


# --- detection ---------------------------------------------------------------------------------------


def test_auto_detection_of_every_format(tmp_path):
    canonical = Trajectory("t", "alfworld", "task", (Step("obs", "look"),))
    react = tmp_path / "run.txt"
    react.write_text(REACT_LOG, encoding="utf-8")
    files = {
        "canonical": write_jsonl(tmp_path / "c.jsonl", [canonical.to_json()]),
        "eto": write_json(tmp_path / "alfworld_sft.json", [eto_alfworld()]),
        "agentgym": write_jsonl(tmp_path / "a.jsonl", [agentgym_alfworld()]),
        "openai": write_jsonl(tmp_path / "o.jsonl", [openai_record()]),
        "sharegpt": write_json(tmp_path / "s.json", sharegpt_record()),
        "react": react,
    }
    assert set(files) == set(FORMATS)
    for fmt, path in files.items():
        assert detect_format(path) == fmt, path
        assert read_all(path), fmt
    # JSONL in a file with another extension is still JSON
    assert detect_format(write_jsonl(tmp_path / "c.log", [canonical.to_json()])) == "canonical"


def test_agentgym_detected_by_loss_key_without_item_id(tmp_path):
    record = agentgym_alfworld()
    del record["item_id"]
    assert detect_format(write_jsonl(tmp_path / "x.jsonl", [record])) == "agentgym"


def test_detection_failures_say_pass_format(tmp_path):
    unknown = write_jsonl(tmp_path / "u.jsonl", [{"prompt": "hi", "label": "x"}])
    with pytest.raises(DataError, match=r"u\.jsonl:1: cannot tell the format.*\[label, prompt\].*pass --format NAME"):
        detect_format(unknown)
    prose = tmp_path / "notes.txt"
    prose.write_text("just some notes\nwithout actions\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"no '> command' or 'Action: command' line.*pass --format"):
        detect_format(prose)
    broken = tmp_path / "b.jsonl"
    broken.write_text("{not json\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"b\.jsonl:1: invalid JSON: .* \(column 2\)"):
        detect_format(broken)
    empty = tmp_path / "e.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty file"):
        detect_format(empty)


def test_unknown_format_name_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="unknown format 'csv'; known: auto, canonical, eto"):
        read_trajectories([tmp_path / "x.jsonl"], "csv")
    with pytest.raises(DataError, match="no such file"):
        read_all(tmp_path / "missing.jsonl")


# --- bad input ---------------------------------------------------------------------------------------


def test_malformed_json_line_names_file_line_and_column(tmp_path):
    path = tmp_path / "c.jsonl"
    good = Trajectory("t", "alfworld", "task", (Step("o", "look"),)).to_line()
    path.write_text(good + "\n\n" + '{"task": "x", "steps": [}\n', encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_all(path)
    assert info.value.where == f"{path}:3"
    assert "invalid JSON" in info.value.message and "column 25" in info.value.message


def test_non_utf8_bytes(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"task": "caf\xe9", "steps": []}\n')
    with pytest.raises(DataError, match=r"c\.jsonl:1: not valid UTF-8 \(byte offset 13 in the line\)"):
        read_all(path, "canonical")


def test_non_utf8_in_a_transcript(tmp_path):
    path = tmp_path / "run.txt"
    path.write_bytes(b"Task: t\nroom\n> look\nbad \xff byte\n")
    with pytest.raises(DataError, match=r"run\.txt:4: not valid UTF-8 \(byte offset 4 in the line\)"):
        read_all(path, "react")


@pytest.mark.parametrize(
    ("fmt", "record", "message"),
    [
        ("eto", {"id": "a"}, "missing field 'conversations' (expected an array of turns)"),
        ("eto", {"conversations": {"from": "human"}}, "field 'conversations' is object, expected an array of turns"),
        ("eto", {"conversations": [human("x"), {"from": "gpt"}]}, "turn 2 has no 'value' (or 'content')"),
        (
            "eto",
            {"conversations": [human("x"), {"from": "gpt", "value": 3}]},
            "turn 2: 'value' is int, expected a string",
        ),
        ("eto", {"conversations": [human("x"), {"from": "robot", "value": "y"}]}, "turn 2: unknown speaker 'robot'"),
        ("eto", {"id": True, "conversations": []}, "field 'id' is bool, expected a string or integer id"),
        (
            "openai",
            {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": None}]},
            "turn 2: 'content' is null, expected a string",
        ),
        ("canonical", {"steps": []}, "missing field 'task' (expected a string)"),
        (
            "canonical",
            {"task": "t", "steps": [{"observation": "o", "action": "a"}, {"observation": "o", "action": 5}]},
            "field 'steps[1].action' is int, expected a string",
        ),
        (
            "canonical",
            {"task": "t", "steps": [{"observation": "o", "action": "a", "admissible": "a"}]},
            "field 'steps[0].admissible' is string, expected an array of strings or null",
        ),
        (
            "canonical",
            {"task": "t", "steps": [], "outcome": {"success": "yes"}},
            "field 'outcome.success' is string, expected true or false",
        ),
        ("canonical", {"schema": "other/v9", "task": "t", "steps": []}, "unsupported schema 'other/v9'"),
        ("canonical", ["not", "an", "object"], "expected a JSON object, got array"),
    ],
)
def test_missing_fields_and_wrong_types(tmp_path, fmt, record, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [record])
    with pytest.raises(DataError) as info:
        read_all(path, fmt)
    assert info.value.where == f"{path}:1"
    assert message in info.value.message


def test_assistant_turn_without_action_names_the_turn(tmp_path):
    record = eto_alfworld()
    record["conversations"][5] = gpt("Thought: I am not sure what to do.\nMaybe look around first?")
    with pytest.raises(DataError, match=r"turn 6: no action found \(expected a line 'Action: <command>'\)"):
        read_all(write_jsonl(tmp_path / "e.jsonl", [record]))


def test_json_array_item_position(tmp_path):
    bad = eto_alfworld()
    del bad["conversations"]
    path = write_json(tmp_path / "alfworld_sft.json", [eto_alfworld(), bad])
    with pytest.raises(DataError) as info:
        read_all(path)
    assert info.value.where == f"{path}: item 1"


def test_broken_json_document_is_located(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[\n {"steps": []},\n {"steps": ]\n]\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"d\.json:3: invalid JSON: Expecting value \(column 12\)"):
        read_all(path, "canonical")


def test_empty_trajectories_are_skipped_and_counted(tmp_path):
    preamble_only = {"id": "p", "conversations": [human(ALFWORLD_INSTRUCTION), gpt("OK")]}
    no_action_yet = {"id": "q", "conversations": [human(ALFWORLD_INSTRUCTION), gpt("OK"), human(ALFWORLD_ROOM)]}
    stats = ReaderStats()
    path = write_json(tmp_path / "alfworld_sft.json", [preamble_only, eto_alfworld(), no_action_yet])
    assert [t.task_id for t in read_trajectories([path], stats=stats)] == [
        "pick_and_place_simple-SprayBottle-None-Toilet-422"
    ]
    assert (stats.records, stats.trajectories, stats.skipped_empty, stats.steps) == (3, 1, 2, 4)


def test_huge_observations_pass_through_unchanged(tmp_path):
    huge = "You see " + "a cup, " * 60_000 + "and a door."
    traj = Trajectory("big", "scienceworld", "task", (Step(huge, "look around"),))
    (back,) = read_all(write_jsonl(tmp_path / "c.jsonl", [traj.to_json()]))
    assert back.steps[0].observation == huge
    record = agentgym_record("sciworld_1", huge)
    (chat,) = read_all(write_jsonl(tmp_path / "a.jsonl", [record]))
    assert chat.steps[0].observation == huge


# --- skip mode, streaming, round trip ----------------------------------------------------------------


def test_skip_mode_writes_rejects_and_counts(tmp_path):
    good = eto_alfworld()
    no_action = eto_alfworld("bad-action")
    no_action["conversations"][3] = gpt("Thought: hmm.\nI wonder.")
    path = tmp_path / "mixed.jsonl"
    lines = [json.dumps(good), "{oops", json.dumps(no_action), json.dumps({"id": "m"}), json.dumps(good)]
    path.write_bytes(("\n".join(lines) + "\n").encode() + b'{"id": "\xff"}\n')
    rejects, stats = RejectSink(), ReaderStats()
    read = read_all(path, on_error="skip", rejects=rejects, stats=stats)
    assert len(read) == 2
    assert stats.rejected == {"bad_json": 1, "missing_field": 1, "no_action": 1, "not_utf8": 1}
    assert (stats.records, stats.trajectories) == (6, 2)
    out = tmp_path / "out" / "rejects.jsonl"
    assert rejects.write(out) == 4
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [row["where"] for row in rows] == [f"{path}:{n}" for n in (2, 3, 4, 6)]
    assert rows[0] == {"where": f"{path}:2", "error": rows[0]["error"], "raw": "{oops"}
    assert rows[1]["error"].startswith("turn 4: no action found")
    assert json.loads(rows[1]["raw"]) == no_action
    assert rows[3]["raw"] == '{"id": "\\xff"}'
    assert list(out.parent.iterdir()) == [out]  # no temporary file left behind
    per_file = stats.to_json()["files"][str(path)]
    assert per_file["format"] == "eto" and per_file["rejected"]["no_action"] == 1


def test_skip_mode_json_array_rejects_keep_the_item(tmp_path):
    bad = {"id": "b", "conversations": "nope"}
    rejects = RejectSink()
    path = write_json(tmp_path / "alfworld_sft.json", [bad, eto_alfworld()])
    assert len(read_all(path, "eto", on_error="skip", rejects=rejects)) == 1
    (row,) = rejects.rows
    assert row["where"] == f"{path}: item 0" and json.loads(row["raw"]) == bad


def test_reject_raw_text_is_capped(tmp_path):
    path = tmp_path / "c.jsonl"
    line = '{"task": "' + "x" * 50_000
    path.write_text(line + "\n", encoding="utf-8")
    rejects = RejectSink()
    assert read_all(path, "canonical", on_error="skip", rejects=rejects) == []
    (row,) = rejects.rows
    assert row["raw"].startswith(line[:1000]) and row["raw"].endswith(f"[truncated: {len(line)} characters in all]")


def test_outcome_from_eto_log_meta(tmp_path):
    record = {**eto_alfworld(), "meta": {"reward": 1, "success": True}}
    (traj,) = read_all(write_jsonl(tmp_path / "log.jsonl", [record]))
    assert traj.outcome == Outcome(score=1, success=True)


def test_streaming_yields_before_a_broken_line(tmp_path):
    path = tmp_path / "c.jsonl"
    lines = [Trajectory(f"t{i}", "alfworld", "task", (Step("o", "look"),)).to_line() for i in range(2)]
    path.write_text("\n".join([*lines, '{"task": ', lines[0]]) + "\n", encoding="utf-8")
    stream = read_trajectories([path])
    assert next(stream).task_id == "t0"
    assert next(stream).task_id == "t1"
    with pytest.raises(DataError, match=r"c\.jsonl:3: invalid JSON"):
        next(stream)


def test_canonical_round_trip(tmp_path):
    full = Trajectory(
        task_id="boil/v3",
        env="scienceworld",
        task=BOIL_TASK,
        steps=(
            Step(
                "This room is called the hallway.",
                "teleport to kitchen",
                "Kitchen first.",
                ("look around", "wait"),
                0.0,
            ),
            Step("You teleport to the kitchen.", "look around", None, None, 8.5),
        ),
        outcome=Outcome(score=100.0, success=True),
        meta={"source": "gold_path", "variation": 3},
    )
    bare = Trajectory("t", "alfworld", "put a cup in sink.", (Step("ünïcode ✓ obs", "go to sink 1"),))
    path = tmp_path / "canon.jsonl"
    path.write_text(full.to_line() + "\n" + bare.to_line() + "\n", encoding="utf-8")
    assert read_all(path) == [full, bare]


def test_canonical_optional_fields_and_env_names(tmp_path):
    record = {"task": "t", "steps": [{"observation": "o", "action": "look", "extra": 1}], "unknown_key": True}
    (traj,) = read_all(write_jsonl(tmp_path / "mine.jsonl", [record]), "canonical", env="sciworld")
    assert (traj.task_id, traj.env, traj.meta) == ("mine:0", "scienceworld", {})
    (named,) = read_all(write_jsonl(tmp_path / "n.jsonl", [{**record, "env": "SciWorld"}]), env="webshop")
    assert named.env == "scienceworld"


def test_stats_to_json_shape(tmp_path):
    stats = ReaderStats()
    a = write_json(tmp_path / "alfworld_sft.json", [eto_alfworld()])
    b = write_jsonl(tmp_path / "o.jsonl", [openai_record()])
    assert len(list(read_trajectories([a, b], stats=stats))) == 2
    report = stats.to_json()
    assert report["records"] == 2 and report["trajectories"] == 2 and report["steps"] == 6
    assert {f["format"] for f in report["files"].values()} == {"eto", "openai"}
    json.dumps(report)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Thought: I need a cup.\nAction: go to cabinet 1", ("I need a cup.", "go to cabinet 1")),
        (
            "Thought:\nI think I should search.\n\nAction: \nsearch[red mug]",
            ("I think I should search.", "search[red mug]"),
        ),
        ("Action: look", (None, "look")),
        ("look around", (None, "look around")),
        ("<think>Plan: kitchen.</think>\nteleport to kitchen", ("Plan: kitchen.", "teleport to kitchen")),
        ("Thought: unsure.\nPerhaps later.", None),
    ],
)
def test_split_thought_action(text, expected):
    assert split_thought_action(text) == expected


def test_chat_think_actions_become_the_next_steps_thought(tmp_path):
    record = {
        "id": "react-style",
        "conversations": [
            human(f"{ALFWORLD_ROOM}\nYour task is to: put some spraybottle on toilet."),
            gpt("Action: think: I need a spraybottle first."),
            human("OK."),
            gpt("Thought: Cabinets first.\nAction: go to cabinet 1"),
            human("Observation: On the cabinet 1, you see a spraybottle 2."),
            gpt("Action: think[Take it.]"),
            human("Observation: OK."),
            gpt("Action: take spraybottle 2 from cabinet 1"),
        ],
    }
    (traj,) = read_all(write_jsonl(tmp_path / "react_chat.jsonl", [record]))
    assert [(s.action, s.thought) for s in traj.steps] == [
        ("go to cabinet 1", "I need a spraybottle first\nCabinets first."),  # parse_action drops the final "."
        ("take spraybottle 2 from cabinet 1", "Take it."),
    ]
    assert traj.steps[0].observation.startswith("You are in the middle of a room.")
    assert traj.steps[1].observation == "On the cabinet 1, you see a spraybottle 2."


# --- real shapes: tests/fixtures/real_shapes/ holds invented content in the published files' shapes --------

REAL = Path(__file__).parent / "fixtures" / "real_shapes"


def steps_of(traj: Trajectory) -> list[tuple[str, str, str | None]]:
    return [(s.observation, s.action, s.thought) for s in traj.steps]


def test_eto_think_lines_are_thought_never_observation():
    """ETO's alfworld_3prompts.json episodes: "Think:" lines, "Action:go" without a space, and a think
    written between an action and its observation. The bug read every "Think:" line as observation text,
    so the prompt showed the expert's plan ("... starting with bookshelf 1") before the expert moved."""
    path = REAL / "eto_think_prompts.txt"
    assert detect_format(path) == "react"
    react, act = read_all(path)
    assert (react.task_id, react.env, react.task) == ("react_put_0", "alfworld", "put some candle on nightstand.")
    assert [s.action for s in react.steps] == [
        "go to bookshelf 1",
        "go to bookshelf 2",
        "take candle 4 from bookshelf 2",
        "go to nightstand 1",
        "put candle 4 in/on nightstand 1",
    ]
    assert react.steps[0].observation.endswith("Your task is to: put some candle on nightstand.")
    assert react.steps[0].thought == (
        "To solve the task, I need to find and take a candle, then put it on nightstand.\n"
        "A candle is more likely to appear in bookshelf (1-2), bed (1). "
        "I can check one by one, starting with bookshelf 1."
    )
    assert react.steps[3].observation == "You pick up the candle 4 from the bookshelf 2."
    assert react.steps[3].thought == (
        "Now I find a candle (4). Next, I need to take it.\n"
        "Now I take a candle (4). Next, I need to put it in/on nightstand 1."
    )
    for step in react.steps + act.steps:
        assert "Think" not in step.observation and "Action" not in step.observation
    assert [s.thought for s in act.steps] == [None, None]


def test_react_alfworld_prompt_think_actions_and_ok_replies():
    """ReAct's prompts/alfworld_3prompts.json: "> think:" answered by "OK." (or not answered), ">go" with no space."""
    (traj,) = read_all(REAL / "react_alfworld_prompts.txt")
    assert (traj.task_id, traj.task) == ("react_heat_0", "heat some bread and put it in table.")
    assert [s.action for s in traj.steps] == [
        "go to pantry 1",
        "open pantry 1",
        "take bread 3 from pantry 1",
        "go to oven 1",
        "heat bread 3 with oven 1",
    ]
    assert traj.steps[0].thought.startswith("To solve the task") and traj.steps[0].thought.count("\n") == 1
    assert traj.steps[1].observation == "The pantry 1 is closed."
    assert traj.steps[3].observation == "You pick up the bread 3 from the pantry 1."
    assert traj.steps[3].thought == "Now I find a bread (3). Next, I need to heat it."
    assert all("OK" not in s.observation and ">" not in s.observation for s in traj.steps)


def test_react_webshop_prompt_think_brackets_and_instruction_line():
    """ReAct's WebShop prompt (also Reflexion's webshop_runs/base_prompt.txt): "Action: think[...]" answered
    by "Observation: OK.", the instruction on the line after "Instruction:"."""
    (traj,) = read_all(REAL / "react_webshop_prompt.txt")
    assert traj.env == "webshop"
    assert traj.task == "i want a pack of green tea bags without caffeine, and price lower than 20.00 dollars"
    assert [s.action for s in traj.steps] == [
        "search[green tea bags caffeine free]",
        "click[B01TEA0001]",
        "click[40 bags]",
        "click[Buy Now]",
    ]
    assert traj.steps[1].thought == "B01TEA0001 is caffeine free and under 20 dollars. I will open it."
    assert traj.steps[1].observation.startswith("[Back to Search]") and traj.steps[1].observation.endswith("$23.00")
    assert traj.steps[2].observation.startswith("[Back to Search] \n[< Prev]")
    assert all("think" not in s.action and "OK." not in s.observation for s in traj.steps)


def test_reflexion_log_skips_examples_memory_and_stubs():
    """Reflexion's alfworld trial logs: "#####" between environments, "Environment #N:" headers, two
    in-context example episodes and the reflection memory before "Here is the task:", "STATUS: FAIL"."""
    stats = ReaderStats()
    (traj,) = read_all(REAL / "reflexion_alfworld_trial.log", stats=stats)
    assert (stats.records, stats.skipped_empty) == (3, 2)  # "Environment #0: Success" and the summary
    assert (traj.task_id, traj.env) == ("reflexion_alfworld_trial:env_1", "alfworld")
    assert traj.task == "clean some plate and put it in cupboard."
    assert traj.outcome == Outcome(success=False)
    assert steps_of(traj) == [
        (
            "You are in the middle of a room. Looking quickly around you, you see a counter 1, a cupboard 1, and a "
            "sink 1.\nYour task is to: clean some plate and put it in cupboard.",
            "go to counter 1",
            "The memory says to check the counter first.",
        ),
        ("On the counter 1, you see a plate 5.", "take plate 5 from counter 1", None),
        ("You pick up the plate 5 from the counter 1.", "go to sink 1", None),
    ]


def test_eto_sft_array_with_role_content_turns():
    """ETO's data/alfworld_sft.json: role/content turns, id and game_file, the room, a blank line, the task."""
    (traj,) = read_all(REAL / "eto_alfworld_sft.json")
    assert (traj.task_id, traj.env, traj.task) == ("alfworld_0", "alfworld", "put a candle in nightstand.")
    assert traj.meta["game_file"].endswith("trial_T20190101_000000_000001")
    assert [s.action for s in traj.steps] == [
        "go to bookshelf 1",
        "take candle 3 from bookshelf 1",
        "go to nightstand 1",
        "put candle 3 in/on nightstand 1",
    ]
    assert traj.steps[0].observation == (
        "You are in the middle of a room. Looking quickly around you, you see a bookshelf 1, a nightstand 1, and a "
        "bed 1.\n\nYour task is to: put a candle in nightstand."
    )
    assert traj.steps[1] == Step(
        "On the bookshelf 1, you see a candle 3, and a vase 2.",
        "take candle 3 from bookshelf 1",
        "There is a candle here. I should take it.",
    )


def test_intercode_sql_log_fenced_multiline_query_and_in_context_example():
    """IPR's InterCode-SQL evaluation log: instruction, "OK", one in-context example episode whose
    question has no task marker, then the real question; every query is a ```sql fenced block. The bug
    read the fence's language tag ("sql") as the action."""
    path = REAL / "ipr_intercode_sql_log.json"
    assert detect_format(path) == "eto"
    (traj,) = read_all(path)
    assert traj.task == "Which keepers served at more than one lighthouse, and since when?"
    assert traj.outcome == Outcome(score=1.0, success=True)
    assert steps_of(traj) == [
        (
            "Which keepers served at more than one lighthouse, and since when?",
            "DESCRIBE keeper",
            "I need the columns of the keeper table first.",
        ),
        (
            "[('keeper_id', 'int'), ('name', 'text'), ('lighthouse_id', 'int'), ('start_year', 'int')]",
            "SELECT name, MIN(start_year)\nFROM keeper\nGROUP BY name\nHAVING COUNT(DISTINCT lighthouse_id) > 1",
            "Group the keepers by name and keep those with several lighthouses.",
        ),
        ("[('Ada Quill', 1961), ('Bram Tolle', 1978)]", "submit", "The query answered the question."),
    ]


def test_agentinstruct_os_and_db_commands():
    """AgentInstruct: OS turns "Think: ...\\n\\nAct: bash\\n\\n```bash ...```" and "Act: answer(N)" after a one-shot
    example (loss false); DB turns "Action: Operation" + a ```sql block and "Action: Answer" + "Final Answer:"."""
    path = REAL / "agentinstruct_os_db.jsonl"
    assert detect_format(path) == "agentgym"
    os_task, db_task = read_all(path)
    assert (os_task.task_id, os_task.env) == ("os_12", "os")
    assert os_task.task == "Find how many users have a login shell of /bin/zsh."
    assert steps_of(os_task) == [
        (
            "Find how many users have a login shell of /bin/zsh.",
            "cut -d: -f7 /etc/passwd \\\n  | grep -c '^/bin/zsh$'",
            "The shells are in /etc/passwd; I filter the last field.",
        ),
        ("The output of the OS:\n\n3", "answer(3)", "Three users use zsh."),
    ]
    assert (db_task.task_id, db_task.env) == ("db_40", "db")
    assert [s.action for s in db_task.steps] == [
        "SELECT orchard FROM `harvest`\nWHERE fruit = 'pear' AND year = 2021\n"
        "GROUP BY orchard ORDER BY SUM(tons) DESC LIMIT 1",
        'Final Answer: ["Windmere"]',
    ]
    assert db_task.steps[1].thought == "The orchard is Windmere."


def test_fireact_closing_reward_and_thought_only_turns():
    """FireAct's gpt_format JSONL: the closing "Episode finished, reward = ..." is the outcome, not a state;
    an assistant turn that only thinks ("Thought: ... so the answer is yes.") commits to nothing."""
    rejects, stats = RejectSink(), ReaderStats()
    first, second = read_all(REAL / "fireact_gpt_format.jsonl", on_error="skip", rejects=rejects, stats=stats)
    assert first.outcome == Outcome(success=True) and second.outcome == Outcome(score=0.0)
    assert first.task == "Which river flows through the town where the Lantern Fair began?"
    assert [s.action for s in first.steps] == ["search[Lantern Fair origin town]", "finish[Sedge]"]
    assert first.steps[1].observation == "The Lantern Fair began in Millbrook, a market town on the river Sedge."
    assert dict(stats.rejected) == {"no_action": 1}
    assert rejects.rows[0]["where"].endswith("fireact_gpt_format.jsonl:3")


def test_a_json_object_of_transcripts_is_refused_with_what_was_expected():
    """ETO's and ReAct's alfworld_3prompts.json (an object of transcript strings) is no trajectory file."""
    path = REAL / "eto_prompt_dict.json"
    with pytest.raises(DataError) as info:
        read_all(path)
    assert info.value.where == str(path)
    assert "keys [react_put_0]" in info.value.message and "pass --format NAME" in info.value.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Thought: Count them.\nAction: \n```sql\nSELECT COUNT(*)\nFROM t\n```",
            ("Count them.", "SELECT COUNT(*)\nFROM t"),
        ),
        ("Think: list.\n\nAct: bash\n\n```bash\nls -1\n```", ("list.", "ls -1")),
        ("Done.\nAction: Answer\nFinal Answer: [3]", ("Done.", "Final Answer: [3]")),
        ("THOUGHT: go.\n ACTION: go to desk 1", ("go.", "go to desk 1")),
        ("Thought: the answer is yes.", None),
    ],
)
def test_expert_command_shapes(text, expected):
    assert split_thought_action(text) == expected


def test_react_fenced_action_in_a_transcript(tmp_path):
    path = tmp_path / "sql.txt"
    path.write_text(
        "Task: count ponds\nTables: pond\nAction:\n```sql\nSELECT COUNT(*)\nFROM pond\n```\n"
        "Observation: [(7,)]\nAction: submit\n",
        encoding="utf-8",
    )
    (traj,) = read_all(path)
    assert [s.action for s in traj.steps] == ["SELECT COUNT(*)\nFROM pond", "submit"]
    assert traj.steps[1].observation == "[(7,)]"
    path.write_text("Task: t\nAction: ```sql\nSELECT 1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 2: the fenced action opened here is never closed"):
        read_all(path)


# --- unreadable files: one bad record each, under the same on_error policy ----------------------------


def unreadable_files(tmp_path: Path) -> dict[str, tuple[Path, str, str]]:
    """name -> (file, reason, where) for every kind of file that cannot be read at all."""
    truncated = tmp_path / "truncated.json"
    truncated.write_text(json.dumps([eto_alfworld(), eto_alfworld("b")], indent=1)[:-40], encoding="utf-8")
    lines = truncated.read_text(encoding="utf-8").count("\n") + 1
    bad_bytes = tmp_path / "bytes.json"
    bad_bytes.write_bytes(b'[\n {"id": "caf\xe9"}\n]\n')
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n", encoding="utf-8")
    shape = write_json(tmp_path / "prompts.json", {"react_put_0": "Your task is to: x\n> look\n"})
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("not json\n[1, 2\n", encoding="utf-8")
    return {
        "truncated": (truncated, "bad_json", f"{truncated}:{lines}"),
        "bytes": (bad_bytes, "not_utf8", f"{bad_bytes}:2"),
        "empty": (empty, "empty_file", str(empty)),
        "shape": (shape, "unknown_format", str(shape)),
        "garbage": (garbage, "bad_json", f"{garbage}:1"),
    }


def test_unreadable_files_are_set_aside_and_the_others_read(tmp_path):
    bad = unreadable_files(tmp_path)
    good = write_json(tmp_path / "alfworld_sft.json", [eto_alfworld()])
    rejects, stats = RejectSink(), ReaderStats()
    inputs = [bad["truncated"][0], good, *(path for path, _, _ in list(bad.values())[1:])]
    read = list(read_trajectories(inputs, on_error="skip", rejects=rejects, stats=stats))
    assert [t.task_id for t in read] == ["pick_and_place_simple-SprayBottle-None-Toilet-422"]
    assert dict(stats.rejected) == {"bad_json": 2, "not_utf8": 1, "empty_file": 1, "unknown_format": 1}
    rows = {row["where"]: row for row in rejects.rows}
    assert set(rows) == {where for _, _, where in bad.values()}
    assert all(row["raw"] is None for row in rows.values())
    assert rows[str(bad["empty"][0])]["error"] == "empty file: no records to read"
    assert "keys [react_put_0]" in rows[str(bad["shape"][0])]["error"]
    assert "invalid JSON" in rows[bad["truncated"][2]]["error"]
    per_file = stats.to_json()["files"]
    assert per_file[str(bad["empty"][0])] == {
        "format": None,
        "records": 1,
        "trajectories": 0,
        "steps": 0,
        "skipped_empty": 0,
        "rejected": {"empty_file": 1},
    }


@pytest.mark.parametrize("kind", ["truncated", "bytes", "empty", "shape", "garbage"])
@pytest.mark.parametrize("fmt", ["auto", "eto"])
def test_without_skip_an_unreadable_file_stops_the_read_where_it_is(tmp_path, kind, fmt):
    path, reason, where = unreadable_files(tmp_path)[kind]
    good = write_json(tmp_path / "alfworld_sft.json", [eto_alfworld()])
    with pytest.raises(DataError) as info:
        list(read_trajectories([good, path], fmt))
    if fmt == "auto" or reason in ("bad_json", "not_utf8", "empty_file"):
        assert info.value.where == where and info.value.reason == reason
    else:  # told it is ETO, the object is one record missing its conversations
        assert (info.value.where, info.value.reason) == (str(path), "missing_field")


def test_a_broken_first_jsonl_line_is_one_bad_record(tmp_path):
    path = tmp_path / "c.jsonl"
    good = Trajectory("t", "alfworld", "task", (Step("o", "look"),)).to_line()
    path.write_bytes(b'{"task": "\xff"\n' + good.encode() + b"\n")
    rejects = RejectSink()
    assert [t.task_id for t in read_all(path, on_error="skip", rejects=rejects)] == ["t"]
    assert [row["where"] for row in rejects.rows] == [f"{path}:1"]
    with pytest.raises(DataError, match=r"c\.jsonl:1: not valid UTF-8"):
        read_all(path)


def test_build_sets_an_unreadable_file_aside_with_skip_and_writes_nothing_without(tmp_path):
    from data_tools.build import BuildConfig, build
    from data_tools.samplers import make_sampler

    steps = tuple(
        Step(f"Room {i}.", f"go to room {i + 1}", admissible=(f"go to room {i + 1}", "look around", "open door"))
        for i in range(4)
    )
    good = write_jsonl(
        tmp_path / "traj.jsonl",
        [Trajectory(f"fam{t}/v0", "scienceworld", "Walk.", steps, Outcome(100, True)).to_json() for t in range(6)],
    )
    broken = tmp_path / "broken.json"
    broken.write_text('[\n {"task_id": "x", "steps": [\n', encoding="utf-8")
    out = tmp_path / "fail"
    config = BuildConfig(inputs=(str(good), str(broken)))
    with pytest.raises(DataError) as info:
        build(config, out, sampler=make_sampler("admissible"), progress=False)
    assert info.value.where == f"{broken}:3"
    assert not any(out.iterdir())
    out = tmp_path / "skip"
    config = BuildConfig(inputs=(str(good), str(broken)), on_error="skip")
    result = build(config, out, sampler=make_sampler("admissible"), progress=False)
    (row,) = [json.loads(line) for line in (out / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert row["where"] == f"{broken}:3" and row["error"].startswith("invalid JSON") and row["raw"] is None
    assert result.manifest["counts"]["trajectories"] == 6
