"""OpenRLHF agent executor: the ACT judgment reward plus a bonus for swap-consistent verdicts.

Use: ``--train.agent_func_path <this file>`` (OpenRLHF makes it exclusive with ``--reward.remote_url``).
For every judgment prompt it generates the normal response and, concurrently, a response to the same
prompt with the two candidates swapped. The reward is the ``act_judgment`` reward of the normal
response, plus ``OPENRLHF_ACT_CONSISTENCY_BONUS`` (default 0.5) when both verdicts pick the expert
action. Only the normal response is trained on; the swapped one only checks that the verdict does
not depend on the order. Cost: two generations per sample (about twice the rollout time; the shared
prompt prefix is reused by vLLM's prefix cache).

OpenRLHF executes this file standalone inside every vLLM rollout actor: absolute imports only.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from typing import Any

from openrlhf.utils.agent import AgentExecutorBase, SingleTurnAgentExecutor

from openrlhf_act.errors import DataError
from openrlhf_act.prompts import reverse_candidates
from openrlhf_act.rewards.base import STATS, RewardResult
from openrlhf_act.rewards.catalog import get_reward
from openrlhf_act.rewards.config import RewardConfig, config_from_env
from openrlhf_act.rewards.judgment import NAME as JUDGMENT
from openrlhf_act.schema import decode_judgment_label, encode_label

logger = logging.getLogger("openrlhf_act.consistency")

BONUS_ENV = "OPENRLHF_ACT_CONSISTENCY_BONUS"
DEFAULT_BONUS = 0.5
SWAP_LOG_KEYS = ("swap_available", "swap_correct", "consistent")


def bonus_from_env(environ: dict[str, str] | None = None) -> float:
    """The consistency bonus; a bad setting raises ``ValueError`` when the executor is built."""
    env = os.environ if environ is None else environ
    raw = env.get(BONUS_ENV, "").strip()
    if not raw:
        return DEFAULT_BONUS
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{BONUS_ENV}={raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{BONUS_ENV} must be finite, got {raw!r}")
    return value


def swap_candidates(prompt: str, label: Any) -> tuple[str, str] | None:
    """The prompt with its two candidates swapped, and the matching label, as OpenRLHF hands them over
    (:func:`openrlhf_act.prompts.reverse_candidates` on a raw label); ``None`` when the label is
    unusable, has other than two candidates, or the swap is not possible."""
    try:
        decoded = decode_judgment_label(label)
    except DataError:
        return None
    swapped = reverse_candidates(prompt, decoded) if len(decoded.candidates) == 2 else None
    if swapped is None:
        return None
    swapped_prompt, swapped_label = swapped
    return swapped_prompt, encode_label(swapped_label)


def combine(main: RewardResult, swapped: RewardResult | None, bonus: float) -> tuple[float, float, dict[str, float]]:
    """(reward, score, extra_logs) of one sample from the two judgment results.

    ``consistent``: both verdicts well formed and naming the same candidate (with two candidates,
    both right or both wrong). The score stays the normal response's raw correctness.
    """
    logs = dict(main.logs)
    available = swapped is not None
    both_right = available and main.score == 1.0 and swapped.score == 1.0
    well_formed = available and not any(r.logs["malformed"] or r.logs["label_error"] for r in (main, swapped))
    logs["swap_available"] = float(available)
    logs["swap_correct"] = float(available and swapped.score == 1.0)
    logs["consistent"] = float(well_formed and main.score == swapped.score)
    return main.reward + (bonus if both_right else 0.0), main.score, logs


class AgentExecutor(AgentExecutorBase):
    """Built by OpenRLHF with no arguments; settings come from the environment (see module docstring)."""

    def __init__(self) -> None:
        self.generator = SingleTurnAgentExecutor()  # no reward endpoint: it only generates
        self.judgment = get_reward(JUDGMENT)
        self.config: RewardConfig = config_from_env()
        self.bonus = bonus_from_env()

    def _judge(self, output: dict[str, Any], prompt: str, label: Any, hf_tokenizer: Any) -> RewardResult:
        # Decoded exactly as OpenRLHF decodes the query it hands to a reward function.
        query = hf_tokenizer.decode(output["observation_tokens"], skip_special_tokens=False)
        (result,) = self.judgment.score([query], [prompt], [label], self.config)
        return result

    def _judge_both(
        self, outputs: list[dict[str, Any]], prompt: str, label: Any, swap: tuple[str, str] | None, hf_tokenizer: Any
    ) -> tuple[RewardResult, RewardResult | None]:
        main = self._judge(outputs[0], prompt, label, hf_tokenizer)
        swapped = self._judge(outputs[1], swap[0], swap[1], hf_tokenizer) if swap is not None else None
        return main, swapped

    async def execute(self, prompt, label, sampling_params, max_length, hf_tokenizer, llm_engine, images=None):
        swap = swap_candidates(prompt, label)
        if swap is None:
            STATS.add("consistency.swap_unavailable")
            logger.debug("openrlhf-act consistency: no swappable candidate block; no bonus for this sample")
        common = {
            "sampling_params": sampling_params,
            "max_length": max_length,
            "hf_tokenizer": hf_tokenizer,
            "llm_engine": llm_engine,
            "images": images,
        }
        calls = [self.generator.execute(prompt=prompt, label=label, **common)]
        if swap is not None:
            calls.append(self.generator.execute(prompt=swap[0], label=swap[1], **common))
        outputs = await asyncio.gather(*calls)
        # Off the engine's event loop, as OpenRLHF runs reward functions (decoding is the slow part).
        main, swapped = await asyncio.to_thread(self._judge_both, outputs, prompt, label, swap, hf_tokenizer)
        reward, score, logs = combine(main, swapped, self.bonus)
        output = outputs[0]
        output.update(reward=reward, scores=score, extra_logs=logs)
        # For inspection only: OpenRLHF reads its own keys and ignores this one; it is never trained on.
        output["swap_response_tokens"] = _response_tokens(outputs[1]) if swap is not None else None
        return output


def _response_tokens(output: dict[str, Any]) -> list[int]:
    ((start, end),) = output["action_ranges"]
    return list(output["observation_tokens"][start:end])
