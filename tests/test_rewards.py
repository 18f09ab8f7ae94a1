"""The pure rewards, their configuration, the OpenRLHF batch contract and the entry files."""

from __future__ import annotations

import importlib.util
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openrlhf_act.data_kinds import DATA_KINDS
from openrlhf_act.repeated_logs import REPEATS
from openrlhf_act.rewards import judgment, next_action
from openrlhf_act.rewards.base import STATS
from openrlhf_act.rewards.batch import as_openrlhf_dict, looks_truncated, response_from_query
from openrlhf_act.rewards.catalog import get_reward, rewards
from openrlhf_act.rewards.config import CONFIG_ENV, PRESET_ENV, RewardConfig, config_from_env, make_config
from openrlhf_act.schema import JudgmentLabel, NextActionLabel, encode_label

PROMPT = (
    "<|im_start|>user\nWhich action is better?\nAction 1: open door\nAction 2: go north<|im_end|>\n"
    "<|im_start|>assistant\n"
)


def judgment_label(answer: int = 1) -> str:
    candidates = ("open door", "go north") if answer == 1 else ("go north", "open door")
    return encode_label(JudgmentLabel(answer, candidates, "open door", "t#0", "t", "scienceworld", 0))


def next_label(admissible=("open door", "go north", "look around")) -> str:
    return encode_label(NextActionLabel("open door", admissible, "t", "scienceworld", 0))


@pytest.mark.parametrize(
    "response, answer, reward, score",
    [
        ("<answer>Action 1</answer>", 1, 1.0, 1.0),
        ("<answer>Action 2</answer>", 1, 0.0, 0.0),
        ("<answer>Action 2</answer>", 2, 1.0, 1.0),
        ("<answer>Action 1 or 2</answer>", 1, -0.5, 0.0),
        ("no verdict", 2, -0.5, 0.0),
    ],
)
def test_judgment_reward_values(response, answer, reward, score):
    result = judgment.judgment_reward(response, judgment_label(answer), RewardConfig())
    assert (result.reward, result.score) == (reward, score)
    assert tuple(result.logs) == judgment.LOG_KEYS


def test_judgment_logs_expose_position_bias():
    config = RewardConfig()
    first = judgment.judgment_reward("<answer>Action 1</answer>", judgment_label(1), config).logs
    assert first["pred_first"] == first["gold_first"] == first["correct_gold_first"] == 1.0
    assert first["correct_gold_second"] == 0.0
    second = judgment.judgment_reward("<answer>Action 1</answer>", judgment_label(2), config).logs
    assert second["pred_first"] == 1.0 and second["gold_first"] == 0.0 and second["accuracy"] == 0.0
    think = judgment.judgment_reward("abc</think><answer>2</answer>", judgment_label(2), config).logs
    assert think["reasoning_chars"] == 3.0 and think["correct_gold_second"] == 1.0


def test_binary_preset_and_overrides():
    binary = make_config("binary")
    assert judgment.judgment_reward("nonsense", judgment_label(), binary).reward == 0.0
    custom = make_config("paper", {"malformed": -1, "correct": 2})
    assert judgment.judgment_reward("nonsense", judgment_label(), custom).reward == -1.0
    assert judgment.judgment_reward("<answer>1</answer>", judgment_label(), custom).reward == 2.0
    with pytest.raises(ValueError, match="unknown reward constant"):
        make_config("paper", {"malformd": 1})
    with pytest.raises(ValueError, match="must be a number"):
        make_config("paper", {"correct": "1"})
    with pytest.raises(ValueError, match="unknown reward preset"):
        make_config("nope")


def test_config_from_env():
    env = {PRESET_ENV: "binary", CONFIG_ENV: json.dumps({"exact": 3})}
    config = config_from_env(env)
    assert config.malformed == 0.0 and config.exact == 3.0
    with pytest.raises(ValueError, match="not valid JSON"):
        config_from_env({CONFIG_ENV: "{"})
    with pytest.raises(ValueError, match="JSON object"):
        config_from_env({CONFIG_ENV: "[1]"})


@pytest.mark.parametrize(
    "bad_label",
    [
        None,
        "",
        "{",
        "[]",
        json.dumps({"answer": 1}),
        json.dumps({"answer": 3, "candidates": ["a", "b"]}),
        json.dumps({"answer": True, "candidates": ["a", "b"]}),
        17,
    ],
)
def test_broken_label_is_a_counted_data_error(bad_label, caplog):
    REPEATS.flush()  # a new period: this reason's first record is logged
    before = STATS.snapshot().get("act_judgment.label_error", 0)
    with caplog.at_level(logging.WARNING, logger="openrlhf_act.rewards"):
        result = judgment.judgment_reward("<answer>Action 1</answer>", bad_label, RewardConfig())
    assert result.reward == 0.0 and result.score == 0.0 and result.logs["label_error"] == 1.0
    assert STATS.snapshot()["act_judgment.label_error"] == before + 1
    assert len([r for r in caplog.records if "unusable label" in r.getMessage()]) == 1


@pytest.mark.parametrize(
    "response, reward, score, admissible",
    [
        ("Thought: the door first.\nAction: Open door.", 1.0, 1.0, 1.0),
        ("Action: go north", 0.1, 0.0, 1.0),
        ("Action: fly away", 0.0, 0.0, 0.0),
        ("I am not sure what to do here.\nMaybe look.", -0.5, 0.0, 0.0),
        ("<think>hmm</think>\nAction: open door<|im_end|>", 1.0, 1.0, 1.0),
    ],
)
def test_next_action_reward(response, reward, score, admissible):
    result = next_action.next_action_reward(response, next_label(), RewardConfig())
    assert (result.reward, result.score, result.logs["admissible"]) == (reward, score, admissible)
    assert tuple(result.logs) == next_action.LOG_KEYS


def test_next_action_without_admissible_list_and_truncation():
    label = next_label(admissible=None)
    assert next_action.next_action_reward("Action: go north", label, RewardConfig()).reward == 0.0
    cut = next_action.next_action_reward("Action: open door", label, RewardConfig(), truncated=True)
    assert cut.reward == -0.5 and cut.logs["truncated"] == 1.0


def test_response_from_query_handles_left_truncated_prompts():
    response = "<answer>Action 2</answer><|im_end|>"
    assert response_from_query(PROMPT + response, PROMPT) == response
    truncated_query = PROMPT[40:] + response  # OpenRLHF cut the prompt's head
    assert response_from_query(truncated_query, PROMPT) == response
    assert response_from_query("unrelated text", PROMPT) is None


def reference_response_from_query(query: str, prompt: str) -> str | None:
    """The definition, written the obvious (quadratic) way: the first place where the prompt's last 64
    characters end in the query and the query's head from its 17th character on is a suffix of the prompt."""
    if query.startswith(prompt):
        return query[len(prompt) :]
    if not prompt:
        return query
    tail = prompt[-64:]
    for at in range(len(query) - len(tail) + 1):
        end = at + len(tail)
        if query[at:end] == tail and prompt.endswith(query[min(16, at) : end]):
            return query[end:]
    return None


@st.composite
def prompt_and_query(draw):
    """Adversarial pairs: tiny alphabets, periodic prompts, queries cut from the prompt at any point,
    with a garbled head, and responses that repeat the prompt's tail."""
    alphabet = draw(st.sampled_from(["ab", "a", "abc", "xy<>|"]))
    unit = draw(st.text(alphabet, min_size=1, max_size=6))
    prompt = unit * draw(st.integers(0, 40)) + draw(st.text(alphabet, max_size=80))
    cut = draw(st.integers(0, len(prompt)))
    garbled = draw(st.text(alphabet, max_size=20))
    response = draw(st.text(alphabet, max_size=120)) + (prompt[-70:] if draw(st.booleans()) else "")
    query = draw(st.sampled_from([garbled + prompt[cut:] + response, prompt[cut:] + response, garbled + response]))
    return prompt, query


@settings(max_examples=1500, deadline=None)
@given(prompt_and_query())
def test_response_location_matches_its_definition_on_adversarial_pairs(pair):
    prompt, query = pair
    assert response_from_query(query, prompt) == reference_response_from_query(query, prompt)


@pytest.mark.parametrize("text,head,at_least", [("a" * 300, "a" * 300, 65), ("ab" * 200, "ab" * 150 + "b", 65)])
def test_the_budgeted_search_and_the_border_chain_agree(text, head, at_least):
    from openrlhf_act.rewards.batch import _shortest_overlap_kmp, shortest_overlap

    found = shortest_overlap(text, head, at_least)
    assert found == _shortest_overlap_kmp(text, head[: len(text)], at_least)
    assert found is None or text.endswith(head[:found])


def test_response_location_on_a_long_run_of_near_matches():
    """A left-truncated prompt ending in a long run of one character: every position of the run is a
    candidate that fails only at its far end (quadratic for a candidate-by-candidate search, which the
    budget hands to the border chain). ``python bench/run.py --only rewards`` times it."""
    prompt = "Task: count." + "b" * 64 + "a" * 50_000
    response = "<answer>Action 1</answer>"
    query = "#garbled head#" + prompt[12:] + response
    assert response_from_query(query, prompt) == response
    assert response_from_query("#garbled head#" + "b" * 64 + "a" * 49_999 + "!", prompt) is None


def test_a_million_broken_labels_log_one_example_and_a_count(caplog):
    from openrlhf_act.rewards.batch import score_batch

    REPEATS.flush()
    n = 20_000
    with caplog.at_level(logging.WARNING, logger="openrlhf_act.rewards"):
        results = score_batch(judgment.judgment_reward, judgment.LOG_KEYS, [PROMPT + "x"] * n, [PROMPT] * n,
                              ["{not json"] * n, RewardConfig(), "act_judgment")  # fmt: skip
        assert all(r.logs["label_error"] == 1.0 for r in results)
        assert len(caplog.records) == 1 and "unusable label" in caplog.records[0].getMessage()
        REPEATS.flush()
    summary = caplog.records[-1].getMessage()
    assert len(caplog.records) == 2 and f"{n - 1} more like this" in summary and "unusable label" in summary


def test_repeated_records_summarise_each_period_on_the_next_record():
    from openrlhf_act.repeated_logs import RepeatedRecords

    now = [0.0]
    records = []
    log = logging.getLogger("openrlhf_act.test_repeats")
    log.propagate = False
    handler = logging.Handler()
    handler.emit = records.append
    log.addHandler(handler)
    log.addFilter(RepeatedRecords(period_s=60, clock=lambda: now[0]))
    for i in range(5):
        log.warning("bad row %d", i)
    log.warning("another reason")
    now[0] = 61.0
    log.warning("bad row %d", 99)
    assert [r.getMessage() for r in records][:2] == ["bad row 0", "another reason"]
    assert "4 more like this in the last 61 s" in records[2].getMessage() and "bad row 1" in records[2].getMessage()
    assert records[3].getMessage() == "bad row 99"  # a new period logs its first record again


def test_truncation_detection_uses_the_template_end_marker():
    assert not looks_truncated("<answer>Action 1</answer><|im_end|>", PROMPT)
    assert looks_truncated("<answer>Action 1</answer> and the", PROMPT)
    assert not looks_truncated("<answer>Action 1</answer>", "plain prompt without a chat template")


def test_openrlhf_dict_shapes():
    spec = get_reward("act_judgment")
    results = spec.score(
        [PROMPT + "<answer>Action 1</answer><|im_end|>"], [PROMPT], [judgment_label(1)], RewardConfig()
    )
    one = as_openrlhf_dict(results, spec.log_keys, scalar=True)
    assert one["rewards"] == 1.0 and one["scores"] == 1.0 and one["extra_logs"]["accuracy"] == 1.0
    many = as_openrlhf_dict(results * 3, spec.log_keys, scalar=False)
    assert many["rewards"] == [1.0] * 3 and set(many["extra_logs"]) == set(spec.log_keys)


def _load_entry(name: str):
    """Load an entry file exactly like OpenRLHF's SingleTurnAgentExecutor does."""
    path = get_reward(name).entry_file
    spec = importlib.util.spec_from_file_location("reward_func", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reward_func


def test_entry_files_load_standalone_and_score():
    reward_func = _load_entry("act_judgment")
    out = reward_func([PROMPT + "<answer>Action 2</answer><|im_end|>"], [PROMPT], [judgment_label(2)])
    assert out["rewards"] == 1.0 and out["scores"] == 1.0
    cut = reward_func([PROMPT + "<answer>Action 2</answer> but"], [PROMPT], [judgment_label(2)])
    assert cut["rewards"] == -0.5 and cut["extra_logs"]["truncated"] == 1.0
    na = _load_entry("next_action")
    assert na([PROMPT + "Action: open door<|im_end|>"], [PROMPT], [next_label()])["rewards"] == 1.0


def test_entry_file_never_raises_on_garbage():
    reward_func = _load_entry("act_judgment")
    for queries, prompts, labels in [([None], [None], [None]), ([123], [PROMPT], [{"x": 1}]), ([PROMPT], [], [])]:
        out = reward_func(queries, prompts, labels)
        assert isinstance(out["rewards"], float)
        assert set(out["extra_logs"]) == set(judgment.LOG_KEYS)


def test_entry_file_fails_loudly_on_bad_config(monkeypatch):
    monkeypatch.setenv(PRESET_ENV, "no-such-preset")
    with pytest.raises(ValueError, match="unknown reward preset"):
        _load_entry("act_judgment")


def test_reward_func_is_thread_safe():
    reward_func = _load_entry("act_judgment")
    cases = [
        (PROMPT + f"<answer>Action {1 + i % 2}</answer><|im_end|>", judgment_label(1 + (i // 2) % 2))
        for i in range(400)
    ]
    expected = [1.0 if (1 + i % 2) == (1 + (i // 2) % 2) else 0.0 for i in range(400)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        got = list(pool.map(lambda c: reward_func([c[0]], [PROMPT], [c[1]])["rewards"], cases))
    assert got == expected


def test_agent_executor_paths(capsys):
    from openrlhf_act.cli import main

    assert main(["reward", "executor", "consistency"]) == 0
    path = capsys.readouterr().out.strip()
    assert path.endswith("consistency_executor.py") and Path(path).is_file()
    assert main(["reward", "executor", "nope"]) == 2


def test_registry_lists_builtins_and_data_kinds():
    assert {"act_judgment", "next_action", "routing"} <= set(rewards())
    for name in ("act_judgment", "next_action", "routing"):
        assert get_reward(name).entry_file.endswith(f"{name}_reward.py")
    with pytest.raises(KeyError, match="unknown reward"):
        get_reward("nope")
    assert DATA_KINDS["act_judgment"].reward == "act_judgment"
    assert "--data.multiturn" in DATA_KINDS["sft_multiturn"].flags
