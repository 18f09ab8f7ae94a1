"""Policies for evaluation: one batched call answers the prompts of many episodes at once.

A model policy is one of the samplers of ``data_tools.samplers`` (``vllm``, ``openai``, ``hf``) asked
for one completion per request: a sampler with ``n=1`` is exactly a batched policy, so evaluation sees
the model through the same code that sampled its ACT alternatives. The samplers are handed in by the
caller (the ``eval`` command): evaluation builds on the core, not on the data pipeline. ``expert`` answers with the
environment's expert action (or the label's expert action offline) to check the harness itself.
Evaluation decodes greedily unless told otherwise (``temperature=0``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from openrlhf_act.actions import Completion
from openrlhf_act.errors import UsageError
from openrlhf_act.redaction import is_secret_key, redact
from openrlhf_act.sampling import Sampler, SampleRequest

MakeSampler = Callable[..., Sampler]  # data_tools.samplers.make_sampler: (name, **options) -> Sampler

EXPERT = "expert"
EVAL_DEFAULTS: dict[str, Any] = {"temperature": 0.0}


class Policy(Protocol):
    """``respond`` returns one completion (text and finish reason) per request, in order; ``calls``
    counts batched calls."""

    name: str
    needs_expert: bool
    calls: int

    def respond(self, requests: Sequence[SampleRequest]) -> list[Completion]: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class ExpertPolicy:
    """Replays the expert: ``Action: <expert action>`` (an empty reply where there is none)."""

    name = EXPERT
    needs_expert = True

    def __init__(self) -> None:
        self.calls = 0

    def respond(self, requests: Sequence[SampleRequest]) -> list[Completion]:
        self.calls += 1
        return [Completion(f"Action: {r.expert}" if r.expert else "", "stop") for r in requests]

    def describe(self) -> dict[str, Any]:
        return {"policy": self.name}

    def close(self) -> None:
        """Nothing to release."""


class SamplerPolicy:
    """A sampler asked for one completion per request."""

    needs_expert = False

    def __init__(self, name: str, options: dict[str, Any], make_sampler: MakeSampler):
        self.name = name
        self.options = {**EVAL_DEFAULTS, **options}
        self.sampler = make_sampler(name, **self.options)
        self.calls = 0

    def respond(self, requests: Sequence[SampleRequest]) -> list[Completion]:
        """A prompt the backend refused (too long for the model) answers an empty completion."""
        self.calls += 1
        single = [dataclasses.replace(r, n=1) for r in requests]
        return [completions[0] if completions else Completion("", None) for completions in self.sampler.sample(single)]

    def describe(self) -> dict[str, Any]:
        """What identifies the policy in a run's config (secrets such as API keys left out)."""
        shown = {k: redact(v) for k, v in self.options.items() if not is_secret_key(k) and v is not None}
        return {"policy": self.name, **shown}

    def close(self) -> None:
        self.sampler.close()


def with_thinking(options: dict[str, Any], enabled: bool) -> dict[str, Any]:
    """``options`` with the chat template's ``enable_thinking`` set (``--thinking on|off``); a
    ``chat_template_kwargs`` option that says otherwise is a contradiction."""
    kwargs = dict(options.get("chat_template_kwargs") or {})
    if kwargs.get("enable_thinking", enabled) != enabled:
        raise UsageError("--thinking contradicts chat_template_kwargs.enable_thinking in --policy-option")
    return {**options, "chat_template_kwargs": {**kwargs, "enable_thinking": enabled}}


def stable_seed(*parts: Any) -> int:
    """The seed of one evaluation request, from its identifiers: stable across processes and Python
    versions (``hash`` is salted), so a resumed run asks what the first run would have asked."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def make_policy(name: str, options: dict[str, Any] | None = None, *, make_sampler: MakeSampler) -> Policy:
    """``expert`` or a sampler name with its options (e.g. ``model``, ``max_tokens``, ``base_url``)."""
    if name == EXPERT:
        if options:
            raise UsageError(f"the expert policy takes no options, got {', '.join(sorted(options))}")
        return ExpertPolicy()
    return SamplerPolicy(name, dict(options or {}), make_sampler)
