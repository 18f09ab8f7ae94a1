"""The ACT judgment reward: did the response choose the expert's action?"""

from __future__ import annotations

from openrlhf_act.errors import DataError
from openrlhf_act.rewards.base import STATS, RewardResult, label_error_result
from openrlhf_act.rewards.config import RewardConfig
from openrlhf_act.schema import decode_judgment_label
from openrlhf_act.verdict import TRUNCATED, parse_verdict

NAME = "act_judgment"

# Fixed key set. Ratios a user reads off the averaged curves:
#   accuracy when gold is first  = correct_gold_first / gold_first
#   accuracy when gold is second = correct_gold_second / (1 - gold_first)   (K = 2)
#   position bias                = pred_first far from gold_first (0.5 with balanced data)
LOG_KEYS = (
    "accuracy",
    "malformed",
    "pred_first",
    "gold_first",
    "correct_gold_first",
    "correct_gold_second",
    "response_chars",
    "reasoning_chars",
    "truncated",
    "label_error",
)


def judgment_reward(response: str, label: object, config: RewardConfig, *, truncated: bool = False) -> RewardResult:
    """Reward ``config.correct`` / ``wrong`` / ``malformed``; score is 1.0 only for a correct choice.

    ``truncated``: the response was cut off by the length limit (see :mod:`openrlhf_act.verdict`).
    A label with ``reasoning: "none"`` (the no-reasoning control) asks for the verdict alone: a
    response that reasons is malformed (reason ``reasoned``), whatever it chose.

    >>> from openrlhf_act.schema import JudgmentLabel, encode_label
    >>> label = encode_label(JudgmentLabel(answer=2, candidates=("open door", "go to kitchen"),
    ...     expert="go to kitchen", pair_id="p0", task_id="t0", env="alfworld", step=3))
    >>> response = "<think>The key is in the kitchen.</think><answer>Action 2</answer>"
    >>> judgment_reward(response, label, RewardConfig()).reward
    1.0
    >>> judgment_reward("<answer>Action 1 or Action 2</answer>", label, RewardConfig()).logs["malformed"]
    1.0
    """
    try:
        decoded = decode_judgment_label(label)
    except DataError as exc:
        return label_error_result(NAME, exc, label, LOG_KEYS, response, config.label_error)

    verdict = parse_verdict(
        response,
        len(decoded.candidates),
        truncated=truncated,
        tag=config.verdict_tag,
        candidates=decoded.candidates,
        bare=decoded.reasoning == "none",
    )
    gold_first = decoded.answer == 1
    correct = verdict.choice == decoded.answer
    if verdict.malformed:
        STATS.add(f"{NAME}.malformed.{verdict.reason}")
        reward = config.malformed
    else:
        reward = config.correct if correct else config.wrong
    logs = {
        "accuracy": float(correct),
        "malformed": float(verdict.malformed),
        "pred_first": float(verdict.choice == 1),
        "gold_first": float(gold_first),
        "correct_gold_first": float(correct and gold_first),
        "correct_gold_second": float(correct and decoded.answer == 2),
        "response_chars": float(len(response)),
        "reasoning_chars": float(verdict.reasoning_chars),
        "truncated": float(truncated or verdict.reason == TRUNCATED),
        "label_error": 0.0,
    }
    return RewardResult(reward, float(correct), logs)
