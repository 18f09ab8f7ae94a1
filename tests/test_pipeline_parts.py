"""States, splits, balance and the resampling loop, each on its own."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from data_tools.alternatives import AlternativeConfig, AlternativeStats, derive_seed, sample_alternatives
from data_tools.cache import SampleCache
from data_tools.pairs import balanced_positions, contrast_rows, pair_from_json, pair_to_json
from data_tools.splits import eval_groups, split_of
from openrlhf_act.actions import Completion
from openrlhf_act.prompts import agent_messages, judgment_messages
from openrlhf_act.schema import ContrastPair, Step, Trajectory, decode_judgment_label
from openrlhf_act.states import StateConfig, clip_observation, make_state, states_from_trajectory


def trajectory(task_id: str, steps: int = 12, obs_len: int = 40) -> Trajectory:
    return Trajectory(
        task_id=task_id,
        env="scienceworld",
        task=f"Your task is {task_id}.",
        steps=tuple(
            Step(
                observation=f"obs {i} " + "x" * obs_len,
                action=f"act {i}",
                admissible=(f"act {i}", "look around", f"alt {i}"),
            )
            for i in range(steps)
        ),
    )


def test_state_window_and_answer():
    states = states_from_trajectory(trajectory("t/v0"), StateConfig(window=3))
    assert len(states) == 12
    s = states[5]
    assert s.key == "t/v0#5" and s.expert_action == "act 5" and s.observation.startswith("obs 5")
    assert [a for _, a in s.history] == ["act 2", "act 3", "act 4"] and s.omitted_turns == 2
    assert states[0].history == () and states[0].omitted_turns == 0


def test_token_budget_trims_oldest_turns_never_task_or_observation():
    config = StateConfig(window=8, max_state_tokens=120, chars_per_token=1.0)
    state = states_from_trajectory(trajectory("t/v0", obs_len=30), config)[10]
    assert 0 < len(state.history) < 8
    assert [a for _, a in state.history][-1] == "act 9"  # the newest turn survives
    assert state.omitted_turns == 10 - len(state.history)
    tiny = states_from_trajectory(trajectory("t/v0", obs_len=500), StateConfig(max_state_tokens=10))[3]
    assert tiny.history == () and tiny.observation.startswith("obs 3") and tiny.task.startswith("Your task")


def test_huge_observation_is_clipped_with_a_marker():
    text, clipped = clip_observation("a" * 1000 + "b" * 1000, 100)
    assert (
        clipped
        and len(text) < 200
        and text.startswith("a")
        and text.endswith("b")
        and "1900 characters omitted" in text
    )
    state = make_state(task_id="t", env="e", task="task", turns=[], observation="z" * 50_000, step=0)
    assert len(state.observation) < 17_000


def test_prompts_render_state_and_candidates():
    state = states_from_trajectory(trajectory("t/v0"))[2]
    user = agent_messages(state)[1]["content"]
    assert "Task: Your task is t/v0." in user and "Action: act 1" in user and "obs 2" in user
    assert "Admissible actions: act 2; look around; alt 2" in user
    judge = judgment_messages(state, ("alt 2", "act 2"))[1]["content"]
    assert "Action 1: alt 2\nAction 2: act 2" in judge and "<answer>Action k</answer>" in judge


def test_image_tag_never_reaches_openrlhf():
    state = make_state(task_id="t", env="e", task="see <image> here", turns=[], observation="an <image>", step=0)
    assert "<image>" not in json.dumps(agent_messages(state))


def test_split_by_task_never_leaks_and_is_seeded():
    ids = [f"task{i}/v{j}" for i in range(10) for j in range(3)]
    held = eval_groups(ids, 0.2, seed=3)
    assert len(held) == 6 and held == eval_groups(reversed(ids), 0.2, seed=3)
    assert held != eval_groups(ids, 0.2, seed=4)
    families = eval_groups(ids, 0.2, seed=3, mode="task_family")
    assert len(families) == 2
    for task_id in ids:
        in_eval = split_of(task_id, families, "task_family") == "eval"
        assert in_eval == (task_id.split("/")[0] in families)
    assert eval_groups(["only/v0"], 0.5, seed=0) == frozenset()
    assert len(eval_groups(["a", "b"], 0.9, seed=0)) == 1  # never everything


@pytest.mark.parametrize("count, k", [(10, 2), (11, 2), (9, 3), (1, 2), (0, 4)])
def test_balanced_positions(count, k):
    positions = balanced_positions(count, k, random.Random(0))
    counts = Counter(positions)
    assert sum(counts.values()) == count
    if count:
        assert max(counts.values()) - min(counts.get(i, 0) for i in range(k)) <= 1


def _pairs(n: int, k: int = 2) -> list[ContrastPair]:
    states = states_from_trajectory(trajectory("t/v0", steps=n))
    return [ContrastPair(s, tuple(f"alt {s.step}-{j}" for j in range(k - 1))) for s in states]


def test_contrast_rows_balance_contract_and_both_orders():
    rows = contrast_rows(_pairs(10), seed=1, split="train")
    labels = [decode_judgment_label(r["label"]) for r in rows]
    assert Counter(label.answer for label in labels) == {1: 5, 2: 5}
    for row, label in zip(rows, labels):
        assert label.candidates[label.answer - 1] == label.expert
        assert row["datasource"] == "scienceworld" and row["prompt"][1]["role"] == "user"
        assert f"Action {label.answer}: {label.expert}" in row["prompt"][1]["content"]
    both = contrast_rows(_pairs(5, k=3), seed=1, split="train", both_orders=True)
    by_pair = Counter(decode_judgment_label(r["label"]).pair_id for r in both)
    assert len(both) == 15 and set(by_pair.values()) == {3}
    positions = Counter(
        (decode_judgment_label(r["label"]).pair_id, decode_judgment_label(r["label"]).answer) for r in both
    )
    assert len(positions) == 15


def test_pairs_round_trip():
    pair = _pairs(3)[2]
    again, split = pair_from_json(json.loads(json.dumps(pair_to_json(pair, "eval"))))
    assert again == pair and split == "eval"


class ScriptedSampler:
    """A sampler of our own protocol with fixed answers per round (not an OpenRLHF stand-in)."""

    name = "scripted"

    def __init__(self, script):
        self.script = script
        self.calls = 0

    def fingerprint(self):
        return {"name": self.name}

    def sample(self, requests):
        self.calls += 1
        return [[c if isinstance(c, Completion) else Completion(c, "stop") for c in self.script(r)] for r in requests]

    def close(self):
        pass


def test_resampling_until_different_from_expert(tmp_path):
    states = states_from_trajectory(trajectory("t/v0", steps=4))

    def script(request):  # first round echoes the expert, later rounds differ, step 3 never differs
        step = int(request.key.split("#")[1])
        first_round = request.seed == derive_seed(0, request.key, 0)
        if step == 3 or first_round:
            return [f"Action: {request.expert.upper()}."]
        return ["gibberish\nover lines", f"Action: other {step}"]

    sampler = ScriptedSampler(script)
    cache = SampleCache(tmp_path / "cache.jsonl")
    stats = AlternativeStats()
    found = sample_alternatives(states, sampler, cache, AlternativeConfig(rounds=3), stats)
    cache.close()
    assert found == {f"t/v0#{i}": (f"other {i}",) for i in range(3)}
    assert stats.rejected["equal_to_expert"] == 4 + 2 and stats.rejected["no_action"] == 3
    assert (stats.completions, stats.accepted) == (4 + 2 + 3 + 3, 3)
    assert stats.dropped_states == {"no_usable_alternative": 1} and stats.rounds_used == 3

    # A rerun reuses every cached request: no sampler call at all.
    again = ScriptedSampler(script)
    cache = SampleCache(tmp_path / "cache.jsonl")
    stats2 = AlternativeStats()
    assert sample_alternatives(states, again, cache, AlternativeConfig(rounds=3), stats2) == found
    assert again.calls == 0 and stats2.cached_requests == stats2.requests


def test_require_admissible_and_torn_cache_line(tmp_path):
    states = states_from_trajectory(trajectory("t/v0", steps=2))
    sampler = ScriptedSampler(lambda r: ["Action: not an option", "Action: look around"])
    found = sample_alternatives(
        states, sampler, SampleCache(None), AlternativeConfig(require_admissible=True), AlternativeStats()
    )
    assert found == {"t/v0#0": ("look around",), "t/v0#1": ("look around",)}
    path = tmp_path / "cache.jsonl"
    path.write_text('{"k": "a", "c": [["x", "length"]]}\n{"k": "b", "c": [')
    assert SampleCache(path).get("a") == [Completion("x", "length")] and SampleCache(path).get("b") is None
