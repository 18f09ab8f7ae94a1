"""What a policy is asked and the protocol every sampling backend implements.

One request type serves sampling ACT alternatives (``data_tools.alternatives``) and evaluation
(``openrlhf_act.eval``): a model is asked through the same code in both. The backends (vLLM, an
OpenAI-compatible endpoint, transformers, the environment's admissible actions) live in
``data_tools.samplers``; answers are :class:`openrlhf_act.actions.Completion` objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from openrlhf_act.actions import Completion


@dataclass(frozen=True)
class SampleRequest:
    """One state's prompt to a policy; ``seed`` makes the completions reproducible."""

    key: str
    messages: list[dict[str, str]]
    n: int
    seed: int
    admissible: tuple[str, ...] | None
    expert: str


@runtime_checkable
class Sampler(Protocol):
    """``sample`` returns ``n`` completions per request, in order; ``fingerprint`` keys the cache."""

    name: str

    def fingerprint(self) -> dict[str, Any]: ...

    def sample(self, requests: Sequence[SampleRequest]) -> list[list[Completion]]: ...

    def close(self) -> None: ...
