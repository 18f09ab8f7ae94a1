"""Rewards read what the model committed to: the action grammar, the verdict's natural forms, and both
rewards through OpenRLHF's reward-file contract on prompts and responses in the shapes the chat
templates of the model families users train produce."""

from __future__ import annotations

import pytest

from openrlhf_act.actions import Completion, read_action
from openrlhf_act.integrations.openrlhf.entry import make_reward_func
from openrlhf_act.rewards.base import STATS
from openrlhf_act.schema import JudgmentLabel, NextActionLabel, encode_label
from openrlhf_act.verdict import parse_verdict

ADMISSIBLE = ("open door", "go to kitchen", "look around")


@pytest.mark.parametrize(
    "response, action, reason",
    [
        ("Thought: the key is inside.\nAction: open door", "open door", "ok"),
        ("Action: go to kitchen\nObservation: You are in the kitchen.\nAction: open fridge", "go to kitchen", "ok"),
        ("Action: open door\nAction: look around", None, "several_actions"),
        ("Action: open door\nAction: Open door.", "open door", "ok"),  # the same command twice commits to it
        (
            "Action:\n```sql\nSELECT name\nFROM pets\nWHERE age > 3;\n```",
            "SELECT name\nFROM pets\nWHERE age > 3;",
            "ok",
        ),
        ("Action: ```bash\nls -la /tmp\n```", "ls -la /tmp", "ok"),
        ("Action: ```ls -la```", "ls -la", "ok"),
        ("Action: ```sql\nSELECT 1", None, "unclosed_fence"),
        ("Action:\nlook around", "look around", "ok"),
        ("look around.", "look around", "ok"),  # a bare admissible command
        ("climb the wall", None, "bare_not_admissible"),
        ("I'm not sure what to do here.", None, "bare_not_admissible"),
        ("First I look.\nThen I open.", None, "no_action"),
        ("<think>the door is locked</think>", None, "no_action"),
        ("<think>the door is locked", None, "unclosed_think"),
        ("Action: ", None, "empty_action"),
        ("Action: " + "go north, " * 250, None, "over_long"),
    ],
)
def test_the_action_grammar(response, action, reason):
    assert read_action(response, admissible=ADMISSIBLE) == (action, reason)


def test_a_bare_line_needs_the_states_admissible_commands():
    assert read_action("look around") == (None, "no_action")
    assert read_action("Action: open door", truncated=True) == (None, "truncated")
    prefilled = Completion("reasoning first. Action: open door", "stop", think_open=True)
    assert read_action(prefilled.response) == (None, "unclosed_think")
    closed = Completion("reasoning first.</think>\nAction: open door", "stop", think_open=True)
    assert read_action(closed.response) == ("open door", "ok")


@pytest.mark.parametrize(
    "content, choice, reason",
    [
        ("Action 2", 2, "ok"),
        ("2", 2, "ok"),
        ("(2)", 2, "ok"),
        ("[1]", 1, "ok"),
        ("Action (1)", 1, "ok"),
        ("**Action 2**", 2, "ok"),
        ("Action 2: go to kitchen", 2, "ok"),
        ("Action 2: walk to the kitchen", 2, "ok"),  # a paraphrase: the index decides
        ("Action 1: go to kitchen", None, "disagree"),  # names the other candidate
        ("Action ２", 2, "ok"),  # full-width digits (CJK input methods)
        ("Action ٢", None, "hedge"),  # other scripts' digits are not read
        ("Action 1 or Action 2", None, "hedge"),
        ("B", None, "hedge"),
        ("3", None, "out_of_range"),
    ],
)
def test_the_verdict_reads_natural_forms(content, choice, reason):
    verdict = parse_verdict(f"<answer>{content}</answer>", 2, candidates=("open door", "go to kitchen"))
    assert (verdict.choice, verdict.reason) == (choice, reason)


# (family, rendered prompt ending with the generation prompt, end of turn) -- hand-written in the shapes
# each family's chat template produces, as OpenRLHF decodes them (special tokens kept).
TEMPLATES = [
    (
        "qwen3-thinking",
        "<|im_start|>system\nYou judge actions.<|im_end|>\n<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n",
        "<|im_end|>",
    ),
    (
        "qwen3-no-thinking",
        "<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
        "<|im_end|>",
    ),
    ("qwen3-thinking-2507", "<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n<think>\n", "<|im_end|>"),
    (
        "llama3",
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou judge actions.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n{q}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
        "<|eot_id|>",
    ),
    ("mistral", "<s>[INST] {q} [/INST]", "</s>"),
    ("gemma", "<bos><start_of_turn>user\n{q}<end_of_turn>\n<start_of_turn>model\n", "<end_of_turn>"),
    ("olmo2", "<|endoftext|><|user|>\n{q}\n<|assistant|>\n", "<|endoftext|>"),
]
QUESTION = "Which action is better for the task?\nAction 1: open door\nAction 2: go to kitchen"
JUDGMENT = encode_label(JudgmentLabel(2, ("open door", "go to kitchen"), "go to kitchen", "p#0", "t", "alfworld", 0))
NEXT = encode_label(NextActionLabel("go to kitchen", ADMISSIBLE, "t", "alfworld", 0))


def _reward(name: str, prompt: str, response: str, label: str) -> dict:
    return make_reward_func(name)([prompt + response], [prompt], [label])


@pytest.mark.parametrize("family, template, end", TEMPLATES, ids=[t[0] for t in TEMPLATES])
def test_rewards_through_each_chat_template(family, template, end):
    prompt = template.format(q=QUESTION)
    prefilled = prompt.endswith("<think>\n")
    reasoning = "The key is in the kitchen.\n</think>\n\n" if prefilled else "<think>\nThe key is there.\n</think>\n\n"
    if family == "qwen3-no-thinking":
        reasoning = ""
    finished = reasoning + "<answer>Action 2</answer>" + end
    assert _reward("act_judgment", prompt, finished, JUDGMENT)["rewards"] == 1.0
    cut_off = reasoning + "<answer>Action 2</answer> because the"  # the length limit hit: no end of turn
    logs = _reward("act_judgment", prompt, cut_off, JUDGMENT)["extra_logs"]
    assert logs["truncated"] == 1.0 and logs["malformed"] == 1.0
    acting = reasoning + "Thought: the key.\nAction: go to kitchen\nObservation: a key.\nAction: take key" + end
    result = _reward("next_action", prompt, acting, NEXT)
    assert result["rewards"] == 1.0 and result["extra_logs"]["malformed"] == 0.0
    if prefilled:  # still inside the template's <think>: a verdict drafted there is no verdict
        still_thinking = "Maybe <answer>Action 2</answer>, let me check" + end
        logs = _reward("act_judgment", prompt, still_thinking, JUDGMENT)["extra_logs"]
        assert logs["malformed"] == 1.0 and logs["accuracy"] == 0.0


def test_a_prompt_with_no_known_template_is_counted_not_guessed():
    before = STATS.snapshot().get("truncation_unknown", 0)
    result = _reward("act_judgment", QUESTION + "\n", "<answer>Action 2</answer>", JUDGMENT)
    assert result["rewards"] == 1.0 and result["extra_logs"]["truncated"] == 0.0
    assert STATS.snapshot()["truncation_unknown"] == before + 1


@pytest.mark.parametrize(
    "action",
    ["go to desk 1", "SELECT name\nFROM keeper\nGROUP BY name", "cut -d: -f7 /etc/passwd \\\n  | grep -c zsh"],
)
def test_what_the_data_teaches_reads_back_as_the_same_action(action):
    """IL targets and history turns render a command so that the grammar reads the whole of it back."""
    from openrlhf_act.prompts import action_response, candidate_lines

    assert read_action(action_response(action, "because")) == (action, "ok")
    assert read_action(candidate_lines([action]).replace("Action 1:", "Action:", 1)) == (action, "ok")
