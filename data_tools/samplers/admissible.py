"""Alternatives drawn from the environment's admissible actions: no model needed.

A cheap baseline and a fallback for states the policy keeps answering with the expert action. The
output is formatted as the agent answers (``Action: <cmd>``) so one parser reads every sampler.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from data_tools.samplers.base import FORMAT_VERSION, SamplerBase
from openrlhf_act.actions import Completion, normalize_action
from openrlhf_act.prompts import action_response
from openrlhf_act.sampling import SampleRequest


def alternative_pool(admissible: Sequence[str] | None, expert: str) -> list[str]:
    """Admissible actions other than the expert, one per normalized form, in the environment's order."""
    expert_norm = normalize_action(expert)
    seen = {expert_norm}
    pool = []
    for action in admissible or ():
        norm = normalize_action(action)
        if norm and norm not in seen:
            seen.add(norm)
            pool.append(action)
    return pool


class AdmissibleSampler(SamplerBase):
    """Up to ``n`` distinct admissible non-expert actions per request, uniformly at random.

    Draws are without replacement, so a state with fewer than ``n`` candidates gets fewer
    completions (none when the environment gave no list). ``random.Random(request.seed)`` makes each
    request's draw independent of the others in the batch. Model options are accepted and ignored.
    """

    name = "admissible"

    def fingerprint(self) -> dict[str, Any]:
        return {"sampler": self.name, "format": FORMAT_VERSION}

    def sample(self, requests: Sequence[SampleRequest]) -> list[list[Completion]]:
        results = []
        for request in requests:
            pool = alternative_pool(request.admissible, request.expert)
            drawn = random.Random(request.seed).sample(pool, min(request.n, len(pool)))
            results.append([Completion(action_response(action), "stop") for action in drawn])
        return results
