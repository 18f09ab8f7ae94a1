"""The verdict grammar, adversarially: hedges, drafts, pre-filled think, truncation, huge inputs."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openrlhf_act import verdict as v
from openrlhf_act.verdict import parse_verdict


@pytest.mark.parametrize(
    "response, k, choice",
    [
        ("<answer>Action 1</answer>", 2, 1),
        ("<answer>2</answer>", 2, 2),
        ("<answer> action 2 </answer>", 2, 2),
        ("<ANSWER>ACTION 1</ANSWER>", 2, 1),
        ("I compare both.\n<answer>Action 2</answer><|im_end|>", 2, 2),
        # the chat template pre-filled "<think>": the response starts inside the reasoning
        ("the door is closed, so opening it first is better</think>\n<answer>Action 1</answer>", 2, 1),
        # drafts inside the reasoning are ignored
        ("<think>maybe <answer>Action 2</answer>? no.</think><answer>Action 1</answer>", 2, 1),
        # repeated, agreeing final tags are fine
        ("<answer>Action 2</answer> so: <answer>2</answer>", 2, 2),
        ("<answer>**Action 3**</answer>", 3, 3),
        ("<answer>Action 2.</answer>", 2, 2),
        ("<answer>Action 1</answer></s>", 2, 1),
    ],
)
def test_valid_verdicts(response, k, choice):
    result = parse_verdict(response, k)
    assert result.choice == choice, result
    assert result.reason == v.OK


@pytest.mark.parametrize(
    "response, reason",
    [
        ("", v.NO_VERDICT),
        ("Action 1 is better.", v.NO_VERDICT),
        ("<answer></answer>", v.HEDGE),
        ("<answer>Action 1 or Action 2</answer>", v.HEDGE),
        ("<answer>1, 2</answer>", v.HEDGE),
        ("<answer>Action B</answer>", v.HEDGE),  # a peer's extractor read "B" as "A"
        ("<answer>both</answer>", v.HEDGE),
        ("<answer>Action 1</answer> wait, <answer>Action 2</answer>", v.DISAGREE),
        ("<answer>Action 3</answer>", v.OUT_OF_RANGE),
        ("<answer>Action 0</answer>", v.OUT_OF_RANGE),
        ("<answer>Action 9999999</answer>", v.HEDGE),  # more digits than any index: not a number we accept
        ("<think>thinking about <answer>Action 1</answer>", v.UNCLOSED_THINK),
        ("<think>all reasoning, cut off", v.UNCLOSED_THINK),
        ("<answer>Action 1</answer> and <answer>Action 1", v.UNBALANCED_TAGS),
        ("<think>x</think> the verdict is in the reasoning only", v.NO_VERDICT),
    ],
)
def test_malformed_verdicts(response, reason):
    result = parse_verdict(response, 2)
    assert result.choice is None
    assert result.reason == reason


def test_truncated_response_is_malformed_even_with_a_verdict():
    result = parse_verdict("<answer>Action 1</answer> and then", 2, truncated=True)
    assert result.choice is None and result.reason == v.TRUNCATED


def test_prompt_echo_does_not_count():
    # A model that echoes the format example from the prompt without committing has no verdict.
    echo = "give your final verdict as <answer>Action k</answer>, where k is the number"
    assert parse_verdict(echo, 2).reason == v.HEDGE


def test_custom_tag():
    assert parse_verdict("<verdict>Action 2</verdict>", 2, tag="verdict").choice == 2
    assert parse_verdict("<answer>Action 2</answer>", 2, tag="verdict").reason == v.NO_VERDICT


def test_huge_and_non_ascii_responses():
    reasoning = "思考🙂 " * 200_000
    result = parse_verdict(f"{reasoning}</think><answer>Action 2</answer>", 2)
    assert result.choice == 2
    assert result.reasoning_chars == len(reasoning)
    assert parse_verdict("é" * 1_000_000, 2).reason == v.NO_VERDICT


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=400), st.integers(min_value=-3, max_value=12), st.booleans())
def test_never_raises_on_any_text(text, k, truncated):
    result = parse_verdict(text, k, truncated=truncated)
    assert (result.choice is None) == (result.reason != v.OK)
    assert result.reason in (v.OK, *v.MALFORMED_REASONS)
    if result.choice is not None:
        assert 1 <= result.choice <= k
        assert not truncated


_pieces = st.sampled_from(
    [
        "<answer>",
        "</answer>",
        "<think>",
        "</think>",
        "Action 1",
        "Action 2",
        "action",
        " ",
        "1",
        "2",
        "<|im_end|>",
        "or",
        "\n",
        "Action 10",
    ]
)


@settings(max_examples=600, deadline=None)
@given(st.lists(_pieces, max_size=20).map("".join))
def test_never_raises_on_tag_soup(text):
    result = parse_verdict(text, 2)
    if result.choice is not None:
        # a verdict is only ever read from after the last </think>
        tail = text.rsplit("</think>", 1)[-1]
        assert f"{result.choice}" in tail


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.sampled_from([1, 2]))
def test_reward_is_finite_for_any_response(text, answer):
    from openrlhf_act.rewards.config import RewardConfig
    from openrlhf_act.rewards.judgment import LOG_KEYS, judgment_reward
    from openrlhf_act.schema import JudgmentLabel, encode_label

    label = encode_label(JudgmentLabel(answer, ("go north", "go south"), "go north", "p", "t", "e", 0))
    result = judgment_reward(text, label, RewardConfig())
    assert math.isfinite(result.reward) and result.score in (0.0, 1.0)
    assert tuple(result.logs) == LOG_KEYS and all(math.isfinite(x) for x in result.logs.values())
