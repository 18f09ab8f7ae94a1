"""Sample alternatives from the initial policy: rounds of batched requests until every state has
K-1 usable alternatives or the resampling budget is spent.

A completion is usable when it commits to one well-formed action (``openrlhf_act.actions.read_action``:
the agent prompt's ``Action:`` form, or a bare line that is an admissible command; never a reply cut
off by the length limit), the action differs from the expert action after normalization, it is not a
duplicate of an alternative already kept, it is not a command the environment's parser is known to
reject although its admissible lists offer it (``TextEnv.rejected_command``, counted as
``parser_rejects``), and (optionally) it is one of the state's admissible actions. Every rejected
completion and every state left without enough alternatives is counted by reason for the manifest,
next to the share of completions accepted.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from data_tools.cache import SampleCache
from openrlhf_act.actions import OK, Completion, match_admissible, normalize_action, read_action
from openrlhf_act.envs.registry import ENVS, env_class
from openrlhf_act.prompts import DEFAULT_MAX_ADMISSIBLE_IN_PROMPT, agent_messages
from openrlhf_act.sampling import Sampler, SampleRequest
from openrlhf_act.schema import State


@dataclass(frozen=True)
class AlternativeConfig:
    """``alternatives`` per state (K-1), ``samples_per_round`` completions per request, ``rounds``
    resampling rounds, ``require_admissible`` drops actions the environment would not accept."""

    alternatives: int = 1
    samples_per_round: int = 1
    rounds: int = 4
    require_admissible: bool = False
    seed: int = 0
    batch_size: int = 2048
    max_admissible_in_prompt: int = DEFAULT_MAX_ADMISSIBLE_IN_PROMPT

    def __post_init__(self) -> None:
        if self.alternatives < 1 or self.samples_per_round < 1 or self.rounds < 1 or self.batch_size < 1:
            raise ValueError("alternatives, samples_per_round, rounds and batch_size must be >= 1")


@dataclass
class AlternativeStats:
    """Why completions were rejected and why states were dropped. ``cached_requests`` (reuse after a
    resume) is reported in the summary only, so the manifest stays identical across reruns."""

    rejected: Counter[str] = field(default_factory=Counter)
    dropped_states: Counter[str] = field(default_factory=Counter)
    completions: int = 0
    accepted: int = 0
    requests: int = 0
    cached_requests: int = 0
    rounds_used: int = 0

    def to_json(self) -> dict:
        return {
            "completions": self.completions,
            "accepted_completions": self.accepted,
            "rejected_completions": dict(sorted(self.rejected.items())),
            "dropped_states": dict(sorted(self.dropped_states.items())),
            "requests": self.requests,
            "rounds_used": self.rounds_used,
        }


def derive_seed(seed: int, key: str, round_index: int) -> int:
    """A per-request seed that is stable across processes and Python versions (not ``hash()``)."""
    digest = hashlib.sha256(f"{seed}:{key}:{round_index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def classify(completion: Completion, state: State, kept: list[str], require_admissible: bool) -> tuple[str | None, str]:
    """Return (action, "ok") for a usable completion, else (None, reason)."""
    action, reason = read_action(completion.response, admissible=state.admissible, truncated=completion.truncated)
    if action is None:
        return None, reason
    normalized = normalize_action(action)
    if not normalized:
        return None, "empty_action"
    if normalized == normalize_action(state.expert_action):
        return None, "equal_to_expert"
    if any(normalize_action(k) == normalized for k in kept):
        return None, "duplicate_alternative"
    if state.env in ENVS and env_class(state.env).rejected_command(action) is not None:
        return None, "parser_rejects"
    if require_admissible and state.admissible:
        matched = match_admissible(action, state.admissible)
        if matched is None:
            return None, "not_admissible"
        return matched, OK
    return action, OK


def sample_alternatives(
    states: Sequence[State],
    sampler: Sampler,
    cache: SampleCache,
    config: AlternativeConfig,
    stats: AlternativeStats,
    progress=None,
) -> dict[str, tuple[str, ...]]:
    """Map each state key to its alternatives; states that got too few are absent (and counted)."""
    kept: dict[str, list[str]] = {s.key: [] for s in states}
    fingerprint = sampler.fingerprint()
    for round_index in range(config.rounds):
        todo = [s for s in states if len(kept[s.key]) < config.alternatives]
        if not todo:
            break
        stats.rounds_used = round_index + 1
        for start in range(0, len(todo), config.batch_size):
            chunk = todo[start : start + config.batch_size]
            requests = [
                SampleRequest(
                    key=s.key,
                    messages=agent_messages(s, max_admissible=config.max_admissible_in_prompt),
                    n=config.samples_per_round,
                    seed=derive_seed(config.seed, s.key, round_index),
                    admissible=s.admissible,
                    expert=s.expert_action,
                )
                for s in chunk
            ]
            completions, cached = cache.sample(requests, sampler, fingerprint)
            stats.requests += len(requests)
            stats.cached_requests += cached
            for state, texts in zip(chunk, completions):
                bucket = kept[state.key]
                for text in texts:
                    if len(bucket) >= config.alternatives:
                        break
                    action, reason = classify(text, state, bucket, config.require_admissible)
                    stats.completions += 1
                    if action is None:
                        stats.rejected[reason] += 1
                    else:
                        stats.accepted += 1
                        bucket.append(action)
                if not texts:
                    stats.rejected["no_completion"] += 1
            if progress is not None and round_index == 0:
                progress.update(len(chunk))
    result: dict[str, tuple[str, ...]] = {}
    for state in states:
        alternatives = kept[state.key]
        if len(alternatives) >= config.alternatives:
            result[state.key] = tuple(alternatives[: config.alternatives])
        else:
            stats.dropped_states["no_usable_alternative"] += 1
    return result
