"""OpenRLHF's reward contract around our pure rewards: (queries, prompts, labels) -> rewards dict.

Shared by the entry files OpenRLHF loads by path and by the HTTP reward service, so both read the
response and detect truncation the same way, and both never raise.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

from openrlhf_act.actions import END_MARKERS, prompt_opens_think, with_prefilled_think
from openrlhf_act.rewards.base import STATS, RewardResult
from openrlhf_act.rewards.config import RewardConfig

logger = logging.getLogger("openrlhf_act.rewards")

RewardFn = Callable[..., RewardResult]
_TAIL_CHARS = 64
_GARBLED_CHARS = 16
_TEMPLATE_TAIL_CHARS = 256
# Text that shows which chat template (or tokenizer) rendered a prompt, so that a finished response
# is known to end with one of END_MARKERS: turn markers at the prompt's end, BOS tokens at its start.
TEMPLATE_MARKERS = (
    *END_MARKERS,
    "<|im_start|>",
    "<|start_header_id|>",
    "[/INST]",
    "<start_of_turn>",
    "<|assistant|>",
    "<｜Assistant｜>",
    "<s>",
    "<|begin_of_text|>",
    "<bos>",
)
_TEMPLATE_MARKER = re.compile("|".join(re.escape(m) for m in TEMPLATE_MARKERS))


def response_from_query(query: str, prompt: str) -> str | None:
    """The generated part of ``query`` (prompt + response as OpenRLHF decodes it).

    OpenRLHF left-truncates over-long prompts, so ``query`` may start anywhere inside ``prompt``:
    ``query = prompt[cut:] + response``. The response then starts after the first place where the
    query's head matches a suffix of the prompt (the first few characters are not compared, since
    decoding a cut token sequence can garble them). ``None`` if no such place exists.

    Linear in ``len(query) + len(prompt)`` whatever the texts look like: this runs for every sample of
    a training run, and inside the reward service on text a client controls.
    """
    if query.startswith(prompt):
        return query[len(prompt) :]
    if not prompt:
        return query
    tail = prompt[-_TAIL_CHARS:]
    # The prompt's tail ending inside the garbled head: nothing before it is compared.
    at = query.find(tail, 0, _GARBLED_CHARS + len(tail))
    if at >= 0:
        return query[at + len(tail) :]
    overlap = shortest_overlap(prompt, query[_GARBLED_CHARS : _GARBLED_CHARS + len(prompt)], len(tail) + 1)
    return None if overlap is None else query[_GARBLED_CHARS + overlap :]


def shortest_overlap(text: str, head: str, at_least: int) -> int | None:
    """The smallest ``n >= at_least`` with ``text.endswith(head[:n])``, or ``None``.

    Candidates are tried where ``head`` repeats ``text``'s last characters, comparing at C speed with a
    budget of a few times the input's length; inputs built to exhaust it (many near-matches) go to the
    Knuth-Morris-Pratt border chain, which is linear in Python steps.
    """
    size = min(len(text), len(head))
    if at_least > size or at_least < 1:
        return None
    tail = text[-min(_TAIL_CHARS, at_least) :]
    budget = 4 * (len(text) + len(head))
    at = head.find(tail, at_least - len(tail), size)
    while at >= 0:
        n = at + len(tail)
        if text.endswith(head[:n]):
            return n
        budget -= n
        if budget < 0:
            return _shortest_overlap_kmp(text, head[:size], at_least)
        at = head.find(tail, at + 1, size)
    return None


def _shortest_overlap_kmp(text: str, head: str, at_least: int) -> int | None:
    border = [0] * len(head)  # border[i]: longest proper prefix of head[: i + 1] that is also its suffix
    k = 0
    for i in range(1, len(head)):
        char = head[i]
        while k and head[k] != char:
            k = border[k - 1]
        if head[k] == char:
            k += 1
        border[i] = k
    k = 0  # longest prefix of head that is a suffix of the text read so far
    for char in text[-len(head) :]:
        if k == len(head):
            k = border[k - 1]
        while k and head[k] != char:
            k = border[k - 1]
        if head[k] == char:
            k += 1
    # Every n with text.endswith(head[:n]) lies on k's border chain, longest first.
    best = None
    while k >= at_least:
        best = k
        k = border[k - 1]
    return best


def looks_truncated(response: str, prompt: str) -> bool:
    """Length-limit detection from text alone.

    OpenRLHF decodes with special tokens kept, so a finished turn ends with its end-of-turn token
    (``<|im_end|>``, ``<|eot_id|>``, ``</s>``, ``<end_of_turn>``, ...). That is relied on only where
    the prompt shows a known template or BOS token (ChatML/Qwen, Llama 2 and 3, Mistral, Gemma, OLMo,
    DeepSeek, and plain prompts of tokenizers that add a BOS). A prompt with none of them cannot be
    judged: it counts ``truncation_unknown`` and warns (use OpenRLHF's
    ``--reward.stop_properly_penalty_coef`` there) instead of calling every response cut off.
    """
    if response.rstrip().endswith(END_MARKERS):
        return False
    tail_from = max(0, len(prompt) - _TEMPLATE_TAIL_CHARS)
    if _TEMPLATE_MARKER.search(prompt, tail_from) or _TEMPLATE_MARKER.search(prompt, 0, _TEMPLATE_TAIL_CHARS):
        return True
    STATS.add("truncation_unknown")
    logger.warning(
        "openrlhf-act: cannot tell whether responses were cut off by the length limit: the prompt shows no known "
        "chat template or BOS token (set --reward.stop_properly_penalty_coef in OpenRLHF to penalise them)"
    )
    return False


def _fallback(reward_fn_logs: Sequence[str], value: float) -> RewardResult:
    logs = dict.fromkeys(reward_fn_logs, 0.0)
    if "malformed" in logs:
        logs["malformed"] = 1.0
    return RewardResult(value, 0.0, logs)


def score_one(
    reward_fn: RewardFn, log_keys: Sequence[str], query: Any, prompt: Any, label: Any, config: RewardConfig, name: str
) -> RewardResult:
    """One sample, guarded: any unexpected error becomes the malformed reward plus a counter."""
    try:
        query_s = query if isinstance(query, str) else str(query)
        prompt_s = prompt if isinstance(prompt, str) else ""
        response = response_from_query(query_s, prompt_s)
        if response is None:
            STATS.add(f"{name}.response_not_found")
            return _fallback(log_keys, config.malformed)
        truncated = looks_truncated(response, prompt_s)
        # A reward sees the whole response: a <think> the chat template pre-filled is put back in front.
        response = with_prefilled_think(response, prompt_opens_think(prompt_s))
        return reward_fn(response, label, config, truncated=truncated)
    except Exception as exc:  # the contract: never raise into OpenRLHF
        STATS.add(f"{name}.internal_error")
        logger.exception("openrlhf-act %s: reward failed (%s); returning the malformed reward", name, exc)
        return _fallback(log_keys, config.malformed)


def score_batch(
    reward_fn: RewardFn,
    log_keys: Sequence[str],
    queries: Sequence[Any],
    prompts: Sequence[Any] | None,
    labels: Sequence[Any] | None,
    config: RewardConfig,
    name: str,
) -> list[RewardResult]:
    """Score aligned lists; missing prompts or labels count as empty (a label error, not a crash)."""
    prompts = prompts or ()
    labels = labels or ()
    n_prompts, n_labels = len(prompts), len(labels)
    return [
        score_one(
            reward_fn,
            log_keys,
            q,
            prompts[i] if i < n_prompts else "",
            labels[i] if i < n_labels else None,
            config,
            name,
        )
        for i, q in enumerate(queries or ())
    ]


def as_openrlhf_dict(results: Sequence[RewardResult], log_keys: Sequence[str], *, scalar: bool) -> dict[str, Any]:
    """OpenRLHF's return shape. ``scalar`` for one sample through ``reward_func`` (OpenRLHF wraps the
    value in a 1-element tensor itself); lists for HTTP batches."""
    if scalar and len(results) == 1:
        (r,) = results
        return {"rewards": r.reward, "scores": r.score, "extra_logs": r.logs}  # logs hold exactly log_keys
    return {
        "rewards": [r.reward for r in results],
        "scores": [r.score for r in results],
        "extra_logs": {k: [r.logs[k] for r in results] for k in log_keys},
    }
