"""Samplers of alternative actions from the initial policy (ACT data construction).

``make_sampler("vllm", model=..., temperature=1.0)`` builds one by name. Importing this package is
cheap: vLLM, transformers, torch and openai are imported only by the sampler that uses them.
"""

from __future__ import annotations

from typing import Any

from data_tools.samplers.admissible import AdmissibleSampler
from data_tools.samplers.base import SamplerBase, SamplerError, SamplerOptions
from data_tools.samplers.hf import HFSampler
from data_tools.samplers.openai_api import OpenAISampler
from data_tools.samplers.vllm_offline import VLLMSampler
from openrlhf_act.errors import UsageError
from openrlhf_act.sampling import Sampler

SAMPLERS: dict[str, type[SamplerBase]] = {
    cls.name: cls for cls in (VLLMSampler, OpenAISampler, HFSampler, AdmissibleSampler)
}


def make_sampler(name: str, **options: Any) -> Sampler:
    """The sampler called ``name`` with ``options`` (``None`` values mean "use the default")."""
    try:
        cls = SAMPLERS[name]
    except KeyError:
        raise UsageError(f"unknown sampler {name!r}; choose one of: {', '.join(SAMPLERS)}") from None
    return cls.from_options(**options)


__all__ = [
    "SAMPLERS",
    "SamplerError",
    "SamplerOptions",
    "make_sampler",
]
