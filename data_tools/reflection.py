"""Early Experience's self-reflection baseline (arXiv 2510.08558, "SR"): SFT on model-written
rationales of why the expert action beats the alternative, each followed by the expert action.

For every pair of a ``data build`` and each of its alternatives, a model (``--sampler``, usually the
initial policy or a stronger one) is shown the state, the expert action, the alternative and, when the
build verified it, what the environment made of the alternative, and is asked for a short reflection
that ends with ``Action: <expert action>``. The target row is the state's agent prompt (the one IL,
RL and evaluation use) -> ``Thought: <rationale>`` + ``Action: <expert>``.

Like Early Experience, a rationale whose conclusion is not the expert action is dropped; its reason is
counted: ``argues_alternative`` (its action line names the alternative), ``other_action`` (names
something else), or why it names none (``truncated``, ``no_action``, ``several_actions``, ... from the
one action grammar, ``openrlhf_act.actions``), ``text_after_action`` (the action line is not the
last line) and ``empty_rationale``. Rejected rationales are resampled (``rounds``, new seeds) like
alternatives; pairs that never get one are counted in ``pairs_without_rationale``. Every completion
goes into the sample cache first, so an interrupted export resumes without asking again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from data_tools.alternatives import derive_seed
from data_tools.cache import SampleCache
from openrlhf_act.actions import OK, Completion, final_segment, normalize_action, read_action, strip_end_markers
from openrlhf_act.prompt_budget import Fitted
from openrlhf_act.prompts import Frame, action_response, command_text, env_title, pieces_messages
from openrlhf_act.sampling import Sampler, SampleRequest
from openrlhf_act.schema import ContrastPair

# Sampling defaults that differ from the alternatives' (SamplerOptions): a rationale is a training target,
# so it is sampled cooler than the alternatives (1.0, chosen for diversity) for coherent text, but not
# greedily, so a resampling round can replace a rationale that argued for the wrong action; and it is
# longer than one action (a cut-off rationale is dropped).
DEFAULT_TEMPERATURE = 0.7
DEFAULT_MAX_TOKENS = 1024

ARGUES_ALTERNATIVE = "argues_alternative"
OTHER_ACTION = "other_action"
TEXT_AFTER_ACTION = "text_after_action"
EMPTY_RATIONALE = "empty_rationale"
NO_RATIONALE = "pairs_without_rationale"

REFLECTION_SYSTEM = (
    "You are an expert agent in the text environment {env}. You are shown a situation, the action that "
    "was taken there and an alternative that was not. You explain, as your own internal reasoning before "
    "acting, why the action taken is the better one."
)
REFLECTION_HEAD = "Action taken: "
REFLECTION_ALTERNATIVES = "\nAlternative not taken: "
REFLECTION_TAIL = (
    "\n\nWrite a short self-reflection as an internal monologue, in a few sentences: analyse the situation "
    "and the goal, say what the alternative would lead to and why it is less suitable, and why the action "
    "taken is the right one, grounded in what the situation shows. Stay within the information given; do "
    "not mention that an action was given to you, an expert, or these instructions. End your reply with "
    'exactly one line "Action: <the action taken>".'
)


@dataclass(frozen=True)
class ReflectionConfig:
    """Where rationales come from: the sampler and its options, ``samples_per_round`` completions per
    (pair, alternative) and ``rounds`` resampling rounds for those still without a usable one."""

    sampler: str = "vllm"
    sampler_options: dict[str, Any] = field(default_factory=dict)
    samples_per_round: int = 1
    rounds: int = 4
    batch_size: int = 512

    def __post_init__(self) -> None:
        if self.samples_per_round < 1 or self.rounds < 1 or self.batch_size < 1:
            raise ValueError("--samples-per-round, --rounds and --batch-size must be >= 1")

    def options(self) -> dict[str, Any]:
        """The sampler options with the reflection's defaults filled in where none was given."""
        return {"temperature": DEFAULT_TEMPERATURE, "max_tokens": DEFAULT_MAX_TOKENS, **self.sampler_options}


class Item(NamedTuple):
    """One rationale to write: a pair, one of its alternatives, the fitted agent prompt of its state and
    the environment's verdict on the alternative (``None`` when the build did not verify it)."""

    key: str
    pair: ContrastPair
    alternative: str
    fit: Fitted
    verdict: dict[str, Any] | None
    expert_delta: float | None


@dataclass
class ReflectionStats:
    """Rejected completions by reason (the manifest's ``drops.reflection``) and what was asked."""

    rejected: Counter[str] = field(default_factory=Counter)
    completions: int = 0
    requests: int = 0
    cached_requests: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"completions": self.completions, "requests": self.requests}


def items_of(pairs: Sequence[tuple[ContrastPair, dict[str, Any] | None]], fits: dict[str, Fitted]) -> list[Item]:
    """One item per (pair, alternative) whose state's agent prompt fits (``fits`` by state key)."""
    out = []
    for pair, verified in pairs:
        fit = fits.get(pair.state.key)
        if fit is None:
            continue
        verdicts = {v["action"]: v for v in (verified or {}).get("alternatives", ())}
        expert_delta = (verified or {}).get("expert_delta")
        for index, alternative in enumerate(pair.alternatives):
            key = f"{pair.state.key}#{index}"
            out.append(Item(key, pair, alternative, fit, verdicts.get(alternative), expert_delta))
    return out


def _verdict_text(verdict: dict[str, Any], expert_delta: float | None) -> str:
    """What the environment did with the alternative, in words (``data build --verify-alternatives``)."""
    text = f" (played in the environment: {verdict['verdict'].replace('_', ' ')}, score change {verdict['delta']:+g}"
    if expert_delta is not None:
        text += f"; the action taken: {expert_delta:+g}"
    return text + ")"


def reflection_frame(item: Item) -> Frame:
    """The reflection prompt around the state: the expert action, the alternative and its verdict."""
    state = item.pair.state
    alternative = command_text(item.alternative)
    if item.verdict is not None:
        alternative += _verdict_text(item.verdict, item.expert_delta)
    suffix = (REFLECTION_HEAD, command_text(state.expert_action), REFLECTION_ALTERNATIVES, alternative, REFLECTION_TAIL)
    return Frame("reflection", REFLECTION_SYSTEM.format(env=env_title(state.env)), suffix)


def reflection_messages(item: Item) -> list[dict[str, str]]:
    """The state exactly as the agent prompt shows it (same window, same trims), then the reflection ask."""
    return pieces_messages(reflection_frame(item), item.fit.pieces)


def check_rationale(completion: Completion, expert: str, alternatives: Sequence[str]) -> tuple[str | None, str]:
    """``(rationale, "ok")`` when the completion reasons and then commits to the expert action on its
    last line; the rationale is its text before that line (after any ``</think>``). Else ``(None, reason)``.

    >>> check_rationale(Completion("Only the door leads out.\\nAction: open door"), "open door", ["look"])
    ('Only the door leads out.', 'ok')
    >>> check_rationale(Completion("Looking is safer.\\nAction: look"), "open door", ["look"])
    (None, 'argues_alternative')
    """
    action, reason = read_action(completion.response, truncated=completion.truncated)
    if action is None:
        return None, reason
    normalized = normalize_action(action)
    if normalized != normalize_action(expert):
        return None, ARGUES_ALTERNATIVE if normalized in {normalize_action(a) for a in alternatives} else OTHER_ACTION
    text, _ = strip_end_markers(completion.response)
    _, final, _ = final_segment(text)
    before, _, last = final.rstrip().rpartition("\n")
    if read_action(last).action != action:
        return None, TEXT_AFTER_ACTION
    rationale = before.strip()
    if not rationale:
        return None, EMPTY_RATIONALE
    if read_action(rationale).reason == OK:  # the same action line twice: the target would hold two
        return None, TEXT_AFTER_ACTION
    return rationale, OK


def sample_rationales(
    items: Sequence[Item],
    sampler: Sampler,
    cache: SampleCache,
    config: ReflectionConfig,
    stats: ReflectionStats,
    *,
    seed: int,
    progress=None,
) -> dict[str, str]:
    """Map each item key to its first usable rationale; items left without one are absent."""
    kept: dict[str, str] = {}
    fingerprint = sampler.fingerprint()
    for round_index in range(config.rounds):
        todo = [item for item in items if item.key not in kept]
        for start in range(0, len(todo), config.batch_size):
            chunk = todo[start : start + config.batch_size]
            requests = [
                SampleRequest(
                    key=item.key,
                    messages=reflection_messages(item),
                    n=config.samples_per_round,
                    seed=derive_seed(seed, item.key, round_index),
                    admissible=None,
                    expert=item.pair.state.expert_action,
                )
                for item in chunk
            ]
            answers, cached = cache.sample(requests, sampler, fingerprint)
            stats.requests += len(requests)
            stats.cached_requests += cached
            for item, completions in zip(chunk, answers):
                for completion in completions:
                    stats.completions += 1
                    rationale, reason = check_rationale(completion, item.pair.state.expert_action, [item.alternative])
                    if rationale is None:
                        stats.rejected[reason] += 1
                        continue
                    kept[item.key] = rationale
                    break
            if progress is not None and round_index == 0:
                progress.update(len(chunk))
    return kept


def reflection_row(item: Item, rationale: str) -> dict[str, Any]:
    """The agent prompt -> the rationale as the thought, then the expert action (one ``Action:`` line)."""
    state = item.pair.state
    return {
        "prompt": item.fit.messages,
        "response": [{"role": "assistant", "content": action_response(state.expert_action, thought=rationale)}],
        "datasource": state.env,
    }
