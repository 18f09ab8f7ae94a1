"""Per-state cache of sampled completions, so an interrupted build resumes without re-sampling.

An append-only JSONL file: one line per sampled request, keyed by a hash of everything that
determines the completions (sampler fingerprint, prompt messages, n, seed), holding each completion
as ``[text, finish_reason, think_open]``. A torn last line from a crash is ignored on load. Appends are flushed
after every batch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from openrlhf_act.actions import Completion


def request_key(
    fingerprint: dict[str, Any],
    messages: list[dict[str, str]],
    n: int,
    seed: int,
    admissible: tuple[str, ...] | None = None,
    expert: str = "",
) -> str:
    """Everything a sampler's output may depend on (the admissible sampler reads the admissible
    actions and the expert action, not the prompt)."""
    payload = json.dumps(
        [fingerprint, messages, n, seed, list(admissible or ()), expert], sort_keys=True, ensure_ascii=False
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class SampleCache:
    """``get``/``put`` completions by request key; ``None`` path means an in-memory cache only."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self._entries: dict[str, list[Completion]] = {}
        if self.path and self.path.exists():
            self._load()
        self._handle = None

    def _load(self) -> None:
        assert self.path is not None
        with open(self.path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    entry = json.loads(line)
                    self._entries[entry["k"]] = [Completion(*fields) for fields in entry["c"]]
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue  # a torn line from an interrupted run

    def get(self, key: str) -> list[Completion] | None:
        return self._entries.get(key)

    def put_many(self, items: list[tuple[str, list[Completion]]]) -> None:
        for key, completions in items:
            self._entries[key] = completions
        if self.path is None or not items:
            return
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open across batches
        for key, completions in items:
            entry = {"k": key, "c": [list(c) for c in completions]}
            self._handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __len__(self) -> int:
        return len(self._entries)
