"""Alternatives from plain transformers ``generate``: no vLLM needed, CPU or CUDA.

Slower than vLLM, but it runs any model transformers loads. Requests are batched with left padding
(decoder-only models continue from the right edge of the prompt).

Determinism: transformers samples a whole batch from torch's global RNG, seeded once per batch from
the seeds of the requests in it. The same request list with the same ``batch_size``, device, dtype
and library versions gives the same completions; a request's completions depend on the other
requests in its batch (unlike the vllm sampler, whose seeds are per request).
"""

from __future__ import annotations

import gc
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from data_tools.samplers.base import (
    FORMAT_VERSION,
    SamplerBase,
    SamplerOptions,
    model_identity,
    package_version,
    render_prompt,
    require_model,
)
from openrlhf_act.actions import Completion, prompt_opens_think
from openrlhf_act.errors import UsageError
from openrlhf_act.sampling import SampleRequest

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 8


@dataclass(frozen=True)
class HFOptions(SamplerOptions):
    """``device``: "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...; ``dtype``: "auto"
    (bfloat16 on CUDA, float32 on CPU) or a torch dtype name."""

    device: str = "auto"
    dtype: str = "auto"


def batch_seed(seeds: Sequence[int]) -> int:
    """One torch seed for a batch, stable across processes (``hash()`` is salted per process)."""
    digest = hashlib.sha256(",".join(map(str, seeds)).encode()).digest()
    return int.from_bytes(digest[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


def plan_batches(requests: Sequence[SampleRequest], batch_size: int) -> list[list[int]]:
    """Indices grouped by ``n`` (one ``num_return_sequences`` per ``generate``), then chunked."""
    by_n: dict[int, list[int]] = {}
    for i, request in enumerate(requests):
        by_n.setdefault(request.n, []).append(i)
    return [group[s : s + batch_size] for group in by_n.values() for s in range(0, len(group), batch_size)]


class HFSampler(SamplerBase):
    """``n`` completions per request from ``model.generate(do_sample=True, num_return_sequences=n)``."""

    name = "hf"
    options_type = HFOptions
    options: HFOptions

    def __init__(self, options: HFOptions):
        super().__init__(options)
        self.model_path = require_model(options, self.name)
        if package_version("transformers") is None or package_version("torch") is None:
            raise UsageError("the hf sampler needs torch and transformers: pip install 'openrlhf-act[hf]'")
        self._model: Any = None
        self._tokenizer: Any = None

    @property
    def batch_size(self) -> int:
        return self.options.batch_size or DEFAULT_BATCH_SIZE

    def device_and_dtype(self) -> tuple[str, str]:
        import torch

        device = self.options.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = self.options.dtype
        if dtype == "auto":
            dtype = "float32" if device == "cpu" else "bfloat16"
        return device, dtype

    def fingerprint(self) -> dict[str, Any]:
        device, dtype = self.device_and_dtype()
        return {
            "sampler": self.name,
            "format": FORMAT_VERSION,
            "model": self.model_path,
            "model_identity": model_identity(self.model_path),
            "backend": f"{package_version('transformers')}, {package_version('torch')}",
            "device": device.split(":")[0],
            "dtype": dtype,
            "batch_size": self.batch_size,  # seeds are per batch (module docstring)
            **self.options.sampling_fingerprint(),
        }

    def _load(self) -> tuple[Any, Any]:
        if self._model is None:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            device, dtype = self.device_and_dtype()
            tokenizer = AutoTokenizer.from_pretrained(self.model_path, padding_side="left")
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token = tokenizer.eos_token
            model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=getattr(torch, dtype))
            self._model, self._tokenizer = model.to(device).eval(), tokenizer
        return self._model, self._tokenizer

    def render(self, messages: list[dict[str, str]]) -> str:
        return render_prompt(self._load()[1], messages, self.options.chat_template_kwargs)

    def sample(self, requests: Sequence[SampleRequest]) -> list[list[Completion]]:
        if not requests:
            return []
        import torch

        model, tokenizer = self._load()
        results: list[list[Completion]] = [[] for _ in requests]
        stops = _stop_token_ids(model, tokenizer)
        for batch in plan_batches(requests, self.batch_size):
            texts = [self.render(requests[i].messages) for i in batch]
            # The chat template already holds any BOS token: adding special tokens again would double it.
            encoded = tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt").to(model.device)
            n = requests[batch[0]].n
            greedy = self.options.temperature == 0
            torch.manual_seed(batch_seed([requests[i].seed for i in batch]))
            with torch.inference_mode():
                output = model.generate(
                    **encoded, **self._generate_kwargs(1 if greedy else n), pad_token_id=tokenizer.pad_token_id
                )
            new_tokens = output[:, encoded["input_ids"].shape[1] :]
            decoded = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            # A row that never produced an end-of-turn token was cut off by max_new_tokens.
            finished = torch.isin(new_tokens, torch.tensor(stops, device=new_tokens.device)).any(dim=1).tolist()
            opened = [prompt_opens_think(texts[row // (1 if greedy else n)]) for row in range(len(decoded))]
            completions = [
                Completion(text, "stop" if done else "length", think)
                for text, done, think in zip(decoded, finished, opened)
            ]
            for row, i in enumerate(batch):
                # Greedy decoding gives one completion per prompt (transformers refuses n > 1): repeat it.
                results[i] = [completions[row]] * n if greedy else completions[row * n : (row + 1) * n]
        return results

    def _generate_kwargs(self, n: int) -> dict[str, Any]:
        """Explicit sampling settings, so a model's generation_config.json cannot override them."""
        opts = self.options
        kwargs: dict[str, Any] = {"max_new_tokens": opts.max_tokens, "num_return_sequences": n}
        if opts.temperature == 0:
            return {**kwargs, "do_sample": False}
        sampling = {"do_sample": True, "temperature": opts.temperature, "top_p": opts.top_p, "top_k": opts.top_k or 0}
        return {**kwargs, **sampling}

    def close(self) -> None:
        if self._model is None:
            return
        on_cuda = self._model.device.type == "cuda"
        self._model = self._tokenizer = None
        gc.collect()
        if on_cuda:
            import torch

            torch.cuda.empty_cache()


def _stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The token ids that end a turn: the generation config's ``eos_token_id`` (an id or a list) and
    the tokenizer's own EOS."""
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids = configured if isinstance(configured, list) else [configured]
    return sorted({i for i in [*ids, tokenizer.eos_token_id] if i is not None})
