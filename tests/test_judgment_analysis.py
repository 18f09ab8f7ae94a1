"""The no-reasoning control and the judgment analysis: the verdict-alone rule of the grammar and the
reward, `data build --judge-reasoning none`, `eval judgment --rationale free|none|injected-wrong`
(scripted policies, then the real vLLM sampler with a scripted model), pre-filled replies in the
samplers' prompt rendering, and `--thinking on|off` recorded in runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_tools.samplers.base import render_prompt
from openrlhf_act.cli import main
from openrlhf_act.errors import DataError, UsageError
from openrlhf_act.eval.judgment import run_judgment
from openrlhf_act.eval.policies import with_thinking
from openrlhf_act.eval.summary import summarize_episodes
from openrlhf_act.prompts import JUDGE_INSTRUCTION_VERDICT_ONLY, argued_rationale
from openrlhf_act.rewards.config import RewardConfig
from openrlhf_act.rewards.judgment import judgment_reward
from openrlhf_act.schema import JudgmentLabel, decode_judgment_label, encode_label
from openrlhf_act.verdict import OK, REASONED, parse_verdict
from tests.conftest import requires_vllm
from tests.test_build import rows, write_trajectories
from tests.test_eval import ScriptedPolicy, _judgment_rows

VERDICT_ONLY_TAIL = JUDGE_INSTRUCTION_VERDICT_ONLY.split("{candidates}")[1].format(tag="answer")


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        ("<answer>Action 2</answer>", OK),
        ("  <think>\n\n</think>\n\n<answer>Action 2</answer><|im_end|>", OK),  # an empty think block
        ("<think>The key is in the kitchen.</think><answer>Action 2</answer>", REASONED),
        ("The key is in the kitchen. <answer>Action 2</answer>", REASONED),
        ("<answer>Action 2</answer> because the key is there", REASONED),
        ("<answer>Action 2</answer><answer>Action 2</answer>", REASONED),
        ("<answer>Action 1 or Action 2</answer>", "hedge"),
        ("Action 2", "no_verdict"),
    ],
)
def test_the_verdict_alone_rule(response, reason):
    assert parse_verdict(response, 2, bare=True).reason == reason
    if reason == REASONED:  # the same response is fine where reasoning is asked for
        assert parse_verdict(response, 2).reason == OK


def _label(**extra) -> JudgmentLabel:
    return JudgmentLabel(2, ("open door", "go to kitchen"), "go to kitchen", "p0", "t/v0", "alfworld", 3, **extra)


def test_the_reward_enforces_a_verdict_alone_label_and_free_labels_keep_their_bytes():
    free, bare = _label(), _label(reasoning="none")
    assert "reasoning" not in json.loads(encode_label(free))
    assert decode_judgment_label(encode_label(bare)).reasoning == "none"
    config = RewardConfig()
    reasoned = "<think>The kitchen has the key.</think><answer>Action 2</answer>"
    assert judgment_reward(reasoned, encode_label(free), config).reward == 1.0
    result = judgment_reward(reasoned, encode_label(bare), config)
    assert result.reward == config.malformed and result.logs["malformed"] == 1.0 and result.score == 0.0
    assert judgment_reward("<answer>Action 2</answer>", encode_label(bare), config).reward == 1.0
    with pytest.raises(DataError, match="'reasoning' must be one of free, none"):
        decode_judgment_label({**json.loads(encode_label(free)), "reasoning": "brief"})


def test_build_with_judge_reasoning_none_asks_for_the_verdict_alone(tmp_path):
    trajectories = write_trajectories(tmp_path / "traj.jsonl", tasks=4, steps=3)
    free, bare = tmp_path / "free", tmp_path / "bare"
    assert main(["data", "build", "--input", str(trajectories), "--out", str(free)]) == 0
    assert main(["data", "build", "--input", str(trajectories), "--out", str(bare), "--judge-reasoning", "none"]) == 0
    assert json.loads((bare / "manifest.json").read_text())["config"]["judge_reasoning"] == "none"
    free_rows, bare_rows = rows(free / "train.jsonl"), rows(bare / "train.jsonl")
    assert len(free_rows) == len(bare_rows) > 0
    for plain, verdict_only in zip(free_rows, bare_rows):
        plain_text, bare_text = plain["prompt"][-1]["content"], verdict_only["prompt"][-1]["content"]
        assert bare_text.endswith(VERDICT_ONLY_TAIL) and not plain_text.endswith(VERDICT_ONLY_TAIL)
        # the same state and candidates: only the instruction's last part differs
        assert bare_text[: -len(VERDICT_ONLY_TAIL)] == plain_text[: plain_text.rindex("\n\nThink about")]
        assert decode_judgment_label(verdict_only["label"]).reasoning == "none"
        assert decode_judgment_label(plain["label"]).reasoning == "free"


def _run_dir_config(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


def test_eval_judgment_rationale_modes(tmp_path):
    data = tmp_path / "eval.jsonl"
    _judgment_rows(data)  # 4 rows (gold first in 2), two of them asked again in reverse order
    first = ScriptedPolicy(lambda r: "<answer>Action 1</answer>")
    free = run_judgment(data, first, tmp_path / "free", progress=False)
    assert free["rationale"] == "free" and "rationale" not in _run_dir_config(tmp_path / "free")
    assert all(r.messages[-1]["role"] == "user" for r in first.requests)

    # none: the instruction asks for the verdict alone; a reply that reasons is malformed
    bare = ScriptedPolicy(lambda r: "<answer>Action 1</answer>")
    summary = run_judgment(data, bare, tmp_path / "none", rationale="none", progress=False)
    assert summary["rationale"] == "none" and _run_dir_config(tmp_path / "none")["rationale"] == "none"
    assert all(r.messages[-1]["content"].endswith(VERDICT_ONLY_TAIL) for r in bare.requests)
    assert summary["overall"]["accuracy"] == free["overall"]["accuracy"] == 50.0
    reasoning = ScriptedPolicy(lambda r: "<think>the first</think><answer>Action 1</answer>")
    summary = run_judgment(data, reasoning, tmp_path / "none-reasoned", rationale="none", progress=False)
    assert summary["overall"]["malformed"] == 100.0 and summary["overall"]["accuracy"] == 0.0

    # injected-wrong: the reply starts with a rationale for the wrong candidate; what follows is scored
    follower = ScriptedPolicy(lambda r: _argued_verdict(r.messages[-1]["content"]))
    summary = run_judgment(data, follower, tmp_path / "injected", rationale="injected-wrong", progress=False)
    for request in follower.requests:
        assert request.messages[-1]["role"] == "assistant" and request.messages[-2]["role"] == "user"
        assert request.messages[-1]["content"].startswith("<think>\n") and "</think>" in request.messages[-1]["content"]
    overall = summary["overall"]
    assert overall["accuracy"] == 0.0 and overall["followed_rationale"] == 100.0 and overall["malformed"] == 0.0
    assert "verdicts following the injected rationale 100.00%" in (tmp_path / "injected" / "summary.md").read_text()
    again = ScriptedPolicy(lambda r: "unused")
    run_judgment(data, again, tmp_path / "injected", rationale="injected-wrong", progress=False)
    assert again.calls == 0, "a finished run asks nothing again"
    with pytest.raises(UsageError):  # the run directory holds another setting
        run_judgment(data, again, tmp_path / "injected", progress=False)
    with pytest.raises(UsageError, match="unknown --rationale"):
        run_judgment(data, again, tmp_path / "other", rationale="brief", progress=False)


def _argued_verdict(prefill: str) -> str:
    """The verdict the pre-filled rationale argues for (its last sentence names it)."""
    return f"<answer>{prefill.rsplit('the better action is ', 1)[1].split('.')[0]}</answer>"


def test_an_argued_rationale_names_the_wrong_candidate():
    text = argued_rationale(("open door", "go to kitchen"), 1)
    assert text.startswith("<think>\nAction 1 (open door) is the better choice")
    assert "Action 2 (go to kitchen) would not help" in text and text.endswith("Action 1.\n</think>\n\n")
    assert parse_verdict(text + "<answer>Action 1</answer>", 2).choice == 1


def test_a_rationale_mode_needs_the_builds_instruction(tmp_path):
    label = _label()
    messages = [{"role": "user", "content": "Which is better? Action 1: open door\nAction 2: go to kitchen"}]
    (tmp_path / "eval.jsonl").write_text(json.dumps({"prompt": messages, "label": encode_label(label)}) + "\n")
    policy = ScriptedPolicy(lambda r: "<answer>Action 2</answer>")
    assert run_judgment(tmp_path / "eval.jsonl", policy, tmp_path / "free", swap=False, progress=False)
    with pytest.raises(UsageError, match="row 1: its prompt does not end with the judgment instruction"):
        run_judgment(tmp_path / "eval.jsonl", policy, tmp_path / "none", rationale="none", progress=False)


def test_a_prefilled_reply_is_continued_after_the_generation_prompt(tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    chat = [{"role": "user", "content": "Which action?"}]
    prefill = "<think>\nAction 1 is better.\n</think>\n\n"
    plain = render_prompt(tokenizer, chat, None)
    assert render_prompt(tokenizer, [*chat, {"role": "assistant", "content": prefill}], None) == plain + prefill
    # A template that opens the reasoning itself (DeepSeek-R1 style): the pre-filled <think> is not doubled.
    tokenizer.chat_template = tokenizer.chat_template.replace(
        "{{ '<|im_start|>assistant\n' }}", "{{ '<|im_start|>assistant\n<think>\n' }}"
    )
    opened = render_prompt(tokenizer, chat, None)
    assert opened.endswith("<think>\n")
    continued = render_prompt(tokenizer, [*chat, {"role": "assistant", "content": prefill}], None)
    assert continued == opened + prefill[len("<think>") :] and continued.count("<think>") == 1


def test_thinking_on_off_is_recorded_and_shown():
    assert with_thinking({}, False) == {"chat_template_kwargs": {"enable_thinking": False}}
    with pytest.raises(UsageError, match="--thinking contradicts"):
        with_thinking({"chat_template_kwargs": {"enable_thinking": True}}, False)
    policy = {"policy": "vllm", "chat_template_kwargs": {"enable_thinking": True}}
    assert summarize_episodes([], config={"env": "scienceworld", "policy": policy})["prompting"] == {"thinking": "on"}
    assert "prompting" not in summarize_episodes([], config={"env": "scienceworld", "policy": {"policy": "vllm"}})


@requires_vllm
def test_rationale_modes_through_the_vllm_sampler(tmp_path, capsys):
    """The real engine continues the pre-filled rationale; --rationale none turns thinking off."""
    from openrlhf_act.devtools.scripted_model import build_scripted_model

    model = build_scripted_model(tmp_path / "model", ["<answer>Action 1</answer>"])
    data = tmp_path / "eval.jsonl"
    _judgment_rows(data)
    policy = ["--policy", "vllm", "--model", str(model), "--policy-option", "max_tokens=8", "--no-progress"]
    for mode in ("free", "injected-wrong", "none"):
        out = tmp_path / mode
        assert main(["eval", "judgment", "--data", str(data), "--out", str(out), "--rationale", mode, *policy]) == 0
        summary = json.loads((out / "summary.json").read_text())
        records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
        assert all(r["response"] == "<answer>Action 1</answer>" for r in records), records
        assert summary["overall"]["accuracy"] == 50.0 and summary["overall"]["malformed"] == 0.0
        if mode == "injected-wrong":  # rows whose gold is second were argued to first, which it names
            assert summary["overall"]["followed_rationale"] == 50.0
        elif mode == "none":
            assert summary["prompting"] == {"thinking": "off"}
            assert _run_dir_config(out)["policy"]["chat_template_kwargs"] == {"enable_thinking": False}
    capsys.readouterr()


def test_eval_judgment_reads_the_builds_verdict_tag(tmp_path):
    trajectories = write_trajectories(tmp_path / "traj.jsonl", tasks=4, steps=3)
    build = tmp_path / "act"
    assert main(["data", "build", "--input", str(trajectories), "--out", str(build), "--verdict-tag", "verdict"]) == 0
    judge = ScriptedPolicy(lambda r: "<verdict>Action 1</verdict>")
    summary = run_judgment(build / "train.jsonl", judge, tmp_path / "run", swap=False, progress=False)
    overall = summary["overall"]
    assert overall["malformed"] == 0.0 and overall["accuracy"] == overall["gold_first"] > 0
    assert all(
        r.messages[-1]["content"].endswith("<verdict>Action k</verdict>, where k is the number of the better action.")
        for r in judge.requests
    )
