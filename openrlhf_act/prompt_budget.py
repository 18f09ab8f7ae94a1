"""Prompts that fit: every row the data tools emit stays within ``--max-prompt-tokens``.

OpenRLHF cuts an over-long prompt at its start, where the system prompt and the task are, so the
whole rendered prompt (system, task, history, current observation, admissible actions, candidates
or instruction) is budgeted here, in one place, for every row kind. The rule: the oldest history
turns go first, then the current observation is clipped in the middle (``CLIP_MARKER``); the task
and the candidates are never cut. A prompt that does not fit even then is dropped and counted.

Tokens are counted with the policy's own tokenizer (as its chat template renders the prompt, with
the generation prompt) when one is given, else estimated conservatively (3 characters per token
plus a fixed overhead per message). Speed: each distinct piece of text (an observation, an action,
a framing string) is tokenized once, in batches, and a prompt's count is the sum of its pieces plus
the template's overhead. Pieces tokenized apart never merge across their boundaries, so the sum
runs slightly high; the whole chat-template rendering is tokenized only for prompts whose sum comes
within one token per piece boundary of the limit, and that exact count decides.
"""

from __future__ import annotations

import json
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import chain
from pathlib import Path
from typing import Any, Protocol

from openrlhf_act.errors import DataError
from openrlhf_act.prompts import (
    DEFAULT_MAX_ADMISSIBLE_IN_PROMPT,
    Frame,
    agent_frame,
    pieces_messages,
    safe_text,
    state_pieces,
)
from openrlhf_act.schema import State
from openrlhf_act.states import StateConfig, clip_observation, estimate_tokens

# The prompt limit the recipes pass to OpenRLHF by default (recipes/common.sh, PROMPT_MAX_LEN, PRESET=paper).
DEFAULT_MAX_PROMPT_TOKENS = 4096
MESSAGE_OVERHEAD_TOKENS = 8  # role markers and separators of one chat message, generously
CACHE_LIMIT = 200_000  # distinct texts whose counts are kept; bounds memory on streaming builds
CHUNK = 512  # prompts whose pieces are tokenized in one batch call
MAX_REFITS = 4  # trims after an exact count came out over the limit (one is almost always enough)

Messages = list[dict[str, str]]
Trimmed = tuple[State, Frame, list[str], int]  # the fields of a Fitted


class TokenCounter(Protocol):
    """Counts tokens of text pieces and of whole chats; ``name`` goes into manifests."""

    name: str
    sums_exactly: bool  # a sum over pieces is the prompt's count, so no whole-prompt check is needed

    def prepare(self, texts: Iterable[str]) -> None: ...

    def count(self, text: str) -> int: ...

    def count_all(self, pieces: list[str]) -> int: ...

    def overhead(self, messages: int) -> int: ...

    def prompt_tokens(self, messages: Messages) -> int: ...


class EstimateCounter:
    """No tokenizer: characters / ``chars_per_token`` per text, plus a fixed overhead per message.

    Pieces are summed by length, so the sum is the concatenation's estimate exactly.
    """

    sums_exactly = True

    def __init__(self, chars_per_token: float = 3.0):
        self.chars_per_token = chars_per_token
        self.name = f"estimate ({chars_per_token:g} characters per token, {MESSAGE_OVERHEAD_TOKENS} per message)"

    def prepare(self, texts: Iterable[str]) -> None:
        return None

    def count(self, text: str) -> int:
        return estimate_tokens(text, self.chars_per_token)

    def count_all(self, pieces: list[str]) -> int:
        """The estimate of the pieces' concatenation (exactly what :meth:`prompt_tokens` counts)."""
        return int(sum(map(len, pieces)) / self.chars_per_token) + 1

    def overhead(self, messages: int) -> int:
        return MESSAGE_OVERHEAD_TOKENS * (messages + 1)  # + 1: the generation prompt

    def prompt_tokens(self, messages: Messages) -> int:
        return sum(self.count(m["content"]) for m in messages) + self.overhead(len(messages))


class TokenizerCounter:
    """A Hugging Face tokenizer; piece counts are memoized (bounded) and batched."""

    sums_exactly = False

    def __init__(self, tokenizer: Any, name: str):
        self.tokenizer = tokenizer
        self.templated = bool(getattr(tokenizer, "chat_template", None))
        self.name = f"tokenizer {name}" + (
            " (chat template)" if self.templated else f" + {MESSAGE_OVERHEAD_TOKENS}/message"
        )
        self._backend = getattr(tokenizer, "backend_tokenizer", None)
        self._counts: dict[str, int] = {}
        self._overheads: dict[int, int] = {}

    def _lengths(self, texts: list[str]) -> list[int]:
        """Token counts of the texts as prompts show them (``safe_text``), without special tokens."""
        texts = [safe_text(t) for t in texts]
        if self._backend is not None:
            encode = getattr(self._backend, "encode_batch_fast", self._backend.encode_batch)
            return [len(e) for e in encode(texts, add_special_tokens=False)]
        return [len(self.tokenizer.encode(t, add_special_tokens=False)) for t in texts]

    def prepare(self, texts: Iterable[str]) -> None:
        distinct = set(texts)
        if len(self._counts) + len(distinct) > CACHE_LIMIT:
            self._counts.clear()
        new = list(distinct.difference(self._counts))
        self._counts.update(zip(new, self._lengths(new)))

    def count(self, text: str) -> int:
        n = self._counts.get(text)
        if n is None:
            if len(self._counts) >= CACHE_LIMIT:
                self._counts.clear()
            n = self._counts[text] = self._lengths([text])[0]
        return n

    def count_all(self, pieces: list[str]) -> int:
        """Sum of the pieces' counts: slightly above the concatenation's, which can merge across pieces."""
        try:
            return sum(map(self._counts.__getitem__, pieces))
        except KeyError:
            return sum(map(self.count, pieces))

    def overhead(self, messages: int) -> int:
        """What the template adds around ``messages`` alternating system/user messages (measured once)."""
        if messages not in self._overheads:
            if self.templated:
                probe = [{"role": "system" if i == 0 else "user", "content": "hello"} for i in range(messages)]
                whole = self.prompt_tokens(probe)
                self._overheads[messages] = max(0, whole - messages * self.count("hello"))
            else:
                self._overheads[messages] = MESSAGE_OVERHEAD_TOKENS * (messages + 1)
        return self._overheads[messages]

    def prompt_tokens(self, messages: Messages) -> int:
        """Exact: the chat template's rendering with the generation prompt, tokenized as OpenRLHF does."""
        if not self.templated:
            return sum(self.count(m["content"]) for m in messages) + self.overhead(len(messages))
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self._lengths([text])[0]


def make_counter(tokenizer: str | None, chars_per_token: float = 3.0) -> TokenCounter:
    """The policy's tokenizer when one is named (loaded here, lazily), else the estimate."""
    if not tokenizer:
        return EstimateCounter(chars_per_token)
    from transformers import AutoTokenizer

    try:
        loaded = AutoTokenizer.from_pretrained(tokenizer)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot load the tokenizer {tokenizer!r}: {exc}") from None
    return TokenizerCounter(loaded, tokenizer)


@dataclass
class Fitted:
    """A prompt within the budget: the (possibly trimmed) state in its frame, and its token count."""

    state: State
    frame: Frame
    pieces: list[str]
    tokens: int
    _messages: Messages | None = field(default=None, repr=False)

    @property
    def messages(self) -> Messages:
        """Rendered on demand: data building keeps only the state of the sampling prompt."""
        if self._messages is None:
            self._messages = pieces_messages(self.frame, self.pieces)
        return self._messages


@dataclass
class PromptBudget:
    """Fits prompts into ``max_tokens`` and accounts for one output: token counts, trims and drops."""

    max_tokens: int = DEFAULT_MAX_PROMPT_TOKENS
    counter: TokenCounter = field(default_factory=EstimateCounter)
    max_admissible: int = DEFAULT_MAX_ADMISSIBLE_IN_PROMPT
    tokens: array[int] = field(default_factory=lambda: array("i"))  # compact: one per row of a large build
    trimmed: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        if self.max_tokens <= 0:
            raise ValueError("--max-prompt-tokens must be positive")

    @classmethod
    def load(
        cls, max_tokens: int, tokenizer: str | None, *, chars_per_token: float, max_admissible: int
    ) -> PromptBudget:
        """A budget counting with ``tokenizer`` (loaded now) or, without one, the estimate."""
        return cls(max_tokens, make_counter(tokenizer, chars_per_token), max_admissible)

    def sibling(self) -> PromptBudget:
        """Same limit and counter (and its cache), fresh accounting: one per output file."""
        return PromptBudget(self.max_tokens, self.counter, self.max_admissible)

    def fit_all(self, items: Sequence[tuple[State, Frame]]) -> list[Fitted | None]:
        """:meth:`fit` for many prompts, tokenizing their distinct pieces in batches first."""
        out: list[Fitted | None] = []
        for start in range(0, len(items), CHUNK):
            chunk = items[start : start + CHUNK]
            pieces = [state_pieces(state, max_admissible=self.max_admissible) for state, _ in chunk]
            frames = {frame for _, frame in chunk}
            self.counter.prepare(
                chain((f.system for f in frames), chain.from_iterable(f.suffix for f in frames), chain(*pieces))
            )
            out += [self._fit(state, frame, p) for (state, frame), p in zip(chunk, pieces)]
        return out

    def fit(self, state: State, frame: Frame) -> Fitted | None:
        """The prompt of ``state`` in ``frame`` within the budget, or None (dropped and counted)."""
        return self._fit(state, frame, state_pieces(state, max_admissible=self.max_admissible))

    def _fit(self, state: State, frame: Frame, pieces: list[str]) -> Fitted | None:
        target = self.max_tokens
        for _ in range(MAX_REFITS):
            trimmed = self._trim(state, frame, pieces, target)
            if trimmed is None:
                break
            fitted = Fitted(*trimmed)
            if not self.counter.sums_exactly and fitted.tokens + len(fitted.pieces) > self.max_tokens:
                fitted.tokens = self.counter.prompt_tokens(fitted.messages)
            if fitted.tokens <= self.max_tokens:
                self._account(state, fitted)
                return fitted
            target -= fitted.tokens - self.max_tokens
        self.drop(frame.kind)
        return None

    def drop(self, kind: str) -> None:
        """Count a ``kind`` prompt that cannot fit (the reason names the limit)."""
        self.dropped[f"{kind}_prompt_over_{self.max_tokens}_tokens"] += 1

    def can_fit(self, state: State, frame: Frame) -> bool:
        """Whether the prompt could fit with no history and no observation (the task and candidates fit)."""
        bare = replace(state, history=(), observation="")
        return self._cost(bare, frame)[0] <= self.max_tokens

    def admit(self, messages: Messages, kind: str) -> int | None:
        """A prompt that cannot be trimmed (already rendered rows): its tokens, or None if over."""
        tokens = self.counter.prompt_tokens(messages)
        if tokens > self.max_tokens:
            self.drop(kind)
            return None
        self.tokens.append(tokens)
        return tokens

    def report(self) -> dict[str, Any]:
        """Manifest figures of this output: rows, p50 / p95 / max prompt tokens, and what was trimmed."""
        return {**token_stats(self.tokens), "trimmed": dict(sorted(self.trimmed.items()))}

    def _sum(self, pieces: list[str], frame: Frame) -> int:
        user = self.counter.count_all([*pieces, "\n", *frame.suffix])
        return self.counter.count(frame.system) + user + self.counter.overhead(2)

    def _cost(self, state: State, frame: Frame) -> tuple[int, list[str]]:
        pieces = state_pieces(state, max_admissible=self.max_admissible)
        return self._sum(pieces, frame), pieces

    def _trim(self, state: State, frame: Frame, pieces: list[str], target: int) -> Trimmed | None:
        """Oldest turns first, then the observation; None when even the bare prompt is over ``target``."""
        trial, cost = state, self._sum(pieces, frame)
        for dropped in range(1, len(state.history) + 1):
            if cost <= target:
                break
            trial = replace(state, history=state.history[dropped:], omitted_turns=state.omitted_turns + dropped)
            cost, pieces = self._cost(trial, frame)
        if cost <= target:
            return trial, frame, pieces, cost
        return self._clip(trial, frame, cost, target)

    def _clip(self, state: State, frame: Frame, cost: int, target: int) -> Trimmed | None:
        """Clip the observation in the middle, shrinking in proportion to the excess until it fits."""
        base = self._cost(replace(state, observation=""), frame)[0]
        text, keep = state.observation, len(state.observation)
        while keep > 0:
            keep = min(keep - 1, int(keep * (target - base) / max(1, cost - base)))
            trial = replace(state, observation=clip_observation(text, max(keep, 0))[0])
            cost, pieces = self._cost(trial, frame)
            if cost <= target:
                return trial, frame, pieces, cost
        return None

    def _account(self, original: State, fitted: Fitted) -> None:
        self.tokens.append(fitted.tokens)
        if fitted.state is original:
            return
        if dropped := len(original.history) - len(fitted.state.history):
            self.trimmed["history_turns_dropped"] += dropped
        if fitted.state.observation != original.observation:
            self.trimmed["observations_clipped"] += 1


class FittedConfig:
    """What the build and export configurations share: the budget their rows are fitted to."""

    max_prompt_tokens: int
    tokenizer: str | None
    max_admissible_in_prompt: int
    state: StateConfig

    def prompt_budget(self) -> PromptBudget:
        """The budget every prompt of the output is fitted to (loads the tokenizer, if any)."""
        return PromptBudget.load(
            self.max_prompt_tokens,
            self.tokenizer,
            chars_per_token=self.state.chars_per_token,
            max_admissible=self.max_admissible_in_prompt,
        )


def agent_prompt_fits(budget: PromptBudget, states: Sequence[State]) -> list[Fitted | None]:
    """The agent prompt of each state within ``budget``, None where it cannot fit (counted): the one
    fitting of the data's agent prompts and of the prompts ``eval episodes`` shows the policy."""
    return budget.fit_all([(state, agent_frame(state.env)) for state in states])


def fit_agent_prompts(budget: PromptBudget, states: Sequence[State]) -> list[Fitted]:
    """Agent prompts (sampling, IL, RL, DPO) within ``budget``; states that cannot fit are dropped."""
    return [fit for fit in agent_prompt_fits(budget, states) if fit is not None]


def prompt_manifest(budgets: dict[str, PromptBudget]) -> dict[str, Any]:
    """The manifest's ``prompt_tokens`` section: the limit, the counter and each output's figures."""
    first = next(iter(budgets.values()))
    return {
        "max_prompt_tokens": first.max_tokens,
        "counter": first.counter.name,
        **{name: budget.report() for name, budget in budgets.items()},
    }


def dropped_prompts(budgets: Iterable[PromptBudget]) -> dict[str, int]:
    """Prompts dropped because they could not fit, by reason, over several outputs."""
    total: Counter[str] = Counter()
    for budget in budgets:
        total.update(budget.dropped)
    return dict(sorted(total.items()))


def longest_prompt(path: Path, input_key: str) -> tuple[int, str] | None:
    """The longest prompt of a data file and where the figure comes from: its manifest's figures when
    the file is a build or export output written with them, else measured here with the estimate
    (a string prompt counts as one user message, as OpenRLHF's chat template wraps it). None when
    the file has no readable rows."""
    manifest = path.parent / "manifest.json"
    if manifest.is_file() and manifest.stat().st_mtime >= path.stat().st_mtime:
        section = json.loads(manifest.read_text(encoding="utf-8")).get("prompt_tokens") or {}
        figure = (section.get(path.stem) or {}).get("max")
        if isinstance(figure, int):
            return figure, f"{manifest.name}, {section.get('counter')}"
    counter = EstimateCounter()
    longest = None
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                prompt = json.loads(line).get(input_key) if line.strip() else None
            except (json.JSONDecodeError, AttributeError):
                return None
            if isinstance(prompt, str):
                prompt = [{"role": "user", "content": prompt}]
            if isinstance(prompt, list) and all(isinstance(m, dict) for m in prompt):
                messages = [{"role": str(m.get("role")), "content": str(m.get("content", ""))} for m in prompt]
                longest = max(longest or 0, counter.prompt_tokens(messages))
    return None if longest is None else (longest, f"measured, {counter.name}")


def token_stats(tokens: Sequence[int]) -> dict[str, int | None]:
    """Rows and p50 / p95 / max prompt tokens (nearest rank); None figures when there are no rows."""
    ordered = sorted(tokens)
    if not ordered:
        return {"rows": 0, "p50": None, "p95": None, "max": None}

    def rank(q: float) -> int:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {"rows": len(ordered), "p50": rank(0.5), "p95": rank(0.95), "max": ordered[-1]}
