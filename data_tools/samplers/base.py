"""What every alternative sampler shares: the common options, option parsing, model identity.

A sampler (its protocol and request type are ``openrlhf_act.sampling``) turns agent prompts (chat
messages) into raw completions of the *initial policy* (text and finish reason); the resampling loop
(``data_tools.alternatives``) parses and filters them.
``fingerprint()`` is the cache key of sampled results, so it lists everything that changes the
output and nothing that does not.
This module is stdlib only: heavy backends are imported inside the sampler that needs them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

from openrlhf_act.actions import prompt_opens_think
from openrlhf_act.errors import UsageError

# Bump when a change to a sampler changes its completions for unchanged options (invalidates caches).
# 2: completions carry their finish reason.
FORMAT_VERSION = 2
_MODEL_FILE_SUFFIXES = (".json", ".safetensors", ".bin", ".model", ".jinja", ".txt")
_THINK_START = re.compile(r"^\s*<think>", re.IGNORECASE)


class SamplerError(RuntimeError):
    """A backend failed in a way retries did not fix (unreachable endpoint, engine crash)."""


@dataclass(frozen=True)
class SamplerOptions:
    """Options every model-backed sampler understands (ACT_METHOD.md: temperature 1.0).

    ``top_k=None`` means no top-k cut, also where the model's generation config asks for one, so the
    backends sample from the same distribution. ``batch_size=None`` lets the backend choose.
    """

    model: str | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    max_tokens: int = 512
    chat_template_kwargs: dict[str, Any] | None = None
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise UsageError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise UsageError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k is not None and self.top_k < 1:
            raise UsageError(f"top_k must be >= 1 (or unset), got {self.top_k}")
        if self.max_tokens < 1:
            raise UsageError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.chat_template_kwargs is not None and not isinstance(self.chat_template_kwargs, dict):
            raise UsageError("chat_template_kwargs must be a dict, e.g. {'enable_thinking': false}")

    def sampling_fingerprint(self) -> dict[str, Any]:
        """The sampling settings every backend's output depends on."""
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "max_tokens": self.max_tokens,
            "chat_template_kwargs": self.chat_template_kwargs or {},
        }


class SamplerBase:
    """Option parsing and context-manager support shared by the concrete samplers."""

    name: ClassVar[str]
    options_type: ClassVar[type[SamplerOptions]] = SamplerOptions

    def __init__(self, options: SamplerOptions):
        self.options = options

    @classmethod
    def from_options(cls, **options: Any):
        """Build from keyword options; ``None`` means "not given" so CLI defaults pass straight through."""
        known = {f.name for f in dataclasses.fields(cls.options_type)}
        given = {k: v for k, v in options.items() if v is not None}
        unknown = sorted(set(given) - known)
        if unknown:
            takes = ", ".join(sorted(known))
            raise UsageError(f"sampler {cls.name!r} does not take option(s) {', '.join(unknown)}; it takes: {takes}")
        return cls(cls.options_type(**given))

    def close(self) -> None:
        """Nothing to release by default."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def require_model(options: SamplerOptions, sampler: str) -> str:
    """The model option, checked: a path-like value must exist (hub ids are left to the backend)."""
    model = options.model
    if not model:
        raise UsageError(f"sampler {sampler!r} needs a model (option 'model')")
    looks_like_path = model.startswith((".", "/", "~")) or model.count("/") > 1 or (os.sep != "/" and os.sep in model)
    if looks_like_path and not Path(model).expanduser().exists():
        raise UsageError(f"sampler {sampler!r}: model path {model!r} does not exist")
    return model


def model_identity(model: str) -> str | None:
    """A cheap content identity of a local model directory (file names, sizes, mtimes).

    Part of the fingerprint so that a checkpoint overwritten at the same path never reuses cached
    samples of the old weights; a copied directory only costs a cache miss. ``None`` for hub ids.
    """
    root = Path(model).expanduser()
    if not root.is_dir():
        return None
    digest = hashlib.sha256()
    for path in sorted(root.iterdir()):
        if path.is_file() and path.name.endswith(_MODEL_FILE_SUFFIXES):
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def package_version(*distributions: str) -> str | None:
    """``name version`` of the first installed distribution (sampling can change across versions)."""
    for name in distributions:
        try:
            return f"{name} {metadata.version(name)}"
        except metadata.PackageNotFoundError:
            continue
    return None


def render_prompt(tokenizer: Any, messages: list[dict[str, str]], chat_template_kwargs: dict[str, Any] | None) -> str:
    """The prompt text the policy sees: the model's own chat template with the generation prompt.

    A chat that ends with an assistant message is continued: that message is the start of the reply
    (``eval judgment --rationale injected-wrong`` pre-fills a rationale), written after the
    generation prompt; the completion is the rest. A ``<think>`` it opens with is not written twice
    where the template already opened one.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise UsageError("the model's tokenizer has no chat template; the samplers need a chat (instruct) model")
    prefill = ""
    if messages and messages[-1]["role"] == "assistant":
        messages, prefill = messages[:-1], messages[-1]["content"]
    prompt = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False, **(chat_template_kwargs or {})
    )
    if prefill and prompt_opens_think(prompt):
        prefill = _THINK_START.sub("", prefill, count=1)
    return prompt + prefill
