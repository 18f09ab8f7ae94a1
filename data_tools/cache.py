"""Per-state cache of sampled completions, so an interrupted build resumes without re-sampling.

A :class:`openrlhf_act.files.RecordLog`: one line per sampled request, keyed by a hash of everything
that determines the completions (sampler fingerprint, prompt messages, n, seed), holding each
completion as ``[text, finish_reason, think_open]``, appended after every batch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from openrlhf_act.actions import Completion
from openrlhf_act.files import RecordLog, read_jsonl
from openrlhf_act.redaction import redact
from openrlhf_act.sampling import Sampler, SampleRequest


def request_key(
    fingerprint: dict[str, Any],
    messages: list[dict[str, str]],
    n: int,
    seed: int,
    admissible: tuple[str, ...] | None = None,
    expert: str = "",
) -> str:
    """Everything a sampler's output may depend on (the admissible sampler reads the admissible
    actions and the expert action, not the prompt). Credentials are not (a rotated key keeps the cache)."""
    payload = json.dumps(
        [redact(fingerprint), messages, n, seed, list(admissible or ()), expert], sort_keys=True, ensure_ascii=False
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class SampleCache:
    """``get``/``put`` completions by request key; ``None`` path means an in-memory cache only."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self._entries: dict[str, list[Completion]] = {}
        if self.path:
            self._load()
        self._log: RecordLog | None = None

    def _load(self) -> None:
        assert self.path is not None
        for entry in read_jsonl(self.path, log=True):
            try:
                self._entries[entry["k"]] = [Completion(*fields) for fields in entry["c"]]
            except (KeyError, TypeError, ValueError):
                continue  # not a cache entry

    def get(self, key: str) -> list[Completion] | None:
        return self._entries.get(key)

    def sample(
        self, requests: Sequence[SampleRequest], sampler: Sampler, fingerprint: dict[str, Any]
    ) -> tuple[list[list[Completion]], int]:
        """Completions per request, from the cache where it holds them, the rest asked of ``sampler``
        in one call and cached; also how many requests were answered from the cache."""
        keys = [request_key(fingerprint, r.messages, r.n, r.seed, r.admissible, r.expert) for r in requests]
        found: list[list[Completion] | None] = [self.get(k) for k in keys]
        missing = [i for i, c in enumerate(found) if c is None]
        if missing:
            fresh = sampler.sample([requests[i] for i in missing])
            if len(fresh) != len(missing):
                raise RuntimeError(f"sampler {sampler.name!r} returned {len(fresh)} results for {len(missing)}")
            self.put_many([(keys[i], list(texts)) for i, texts in zip(missing, fresh)])
            for i, texts in zip(missing, fresh):
                found[i] = list(texts)
        return [texts or [] for texts in found], len(requests) - len(missing)

    def put_many(self, items: list[tuple[str, list[Completion]]]) -> None:
        for key, completions in items:
            self._entries[key] = completions
        if self.path is None or not items:
            return
        if self._log is None:
            self._log = RecordLog(self.path)  # kept open across batches
        self._log.extend({"k": key, "c": [list(c) for c in completions]} for key, completions in items)

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __len__(self) -> int:
        return len(self._entries)
