"""Train/eval splits by task, never by step, so no task leaks between the splits."""

from __future__ import annotations

import random
from collections.abc import Iterable

SPLIT_MODES = ("task_id", "task_family")


def split_group(task_id: str, mode: str = "task_id") -> str:
    """The unit that is kept whole: the task id, or its family (the part before the first '/')."""
    if mode == "task_family":
        return task_id.split("/", 1)[0]
    return task_id


def eval_groups(task_ids: Iterable[str], eval_ratio: float, seed: int, mode: str = "task_id") -> frozenset[str]:
    """The groups that go to eval: ``round(ratio * groups)`` of them, at least one when the ratio is
    positive and at least two groups exist, never all of them; chosen by a seeded shuffle of the
    sorted groups so the split depends on the seed and the set of tasks only."""
    if mode not in SPLIT_MODES:
        raise ValueError(f"unknown split mode {mode!r}; choose one of {', '.join(SPLIT_MODES)}")
    if not 0.0 <= eval_ratio < 1.0:
        raise ValueError("eval ratio must be in [0, 1)")
    groups = sorted({split_group(t, mode) for t in task_ids})
    if eval_ratio == 0.0 or len(groups) < 2:
        return frozenset()
    count = min(len(groups) - 1, max(1, round(eval_ratio * len(groups))))
    random.Random(f"split:{seed}").shuffle(groups)
    return frozenset(groups[:count])


def split_of(task_id: str, eval_set: frozenset[str], mode: str = "task_id") -> str:
    return "eval" if split_group(task_id, mode) in eval_set else "train"
