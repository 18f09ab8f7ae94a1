"""What every reward returns, and the process-wide counters of data errors and malformed outputs."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass

from openrlhf_act.repeated_logs import REPEATS

logger = logging.getLogger("openrlhf_act.rewards")
# Per-sample warnings (broken labels, a failing user reward) come once per reason and minute, then as a count.
logger.addFilter(REPEATS)


@dataclass(frozen=True)
class RewardResult:
    """``reward`` drives the advantage; ``score`` is raw correctness (0/1) for dynamic filtering;
    ``logs`` has the same keys for every sample of a given reward (OpenRLHF averages them)."""

    reward: float
    score: float
    logs: dict[str, float]


class RewardStats:
    """Thread-safe counters (rewards run in OpenRLHF's thread pool and in the HTTP service)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


STATS = RewardStats()


def label_error_result(
    reward_name: str, error: Exception, raw_label: object, log_keys: tuple[str, ...], response: str, value: float
) -> RewardResult:
    """A broken label is a data error, not the policy's fault: count it, say so in one log line,
    and return ``value`` (the ``label_error`` constant) with ``label_error`` set; never raise."""
    STATS.add(f"{reward_name}.label_error")
    shown = repr(raw_label)
    if len(shown) > 200:
        shown = shown[:200] + "..."
    logger.warning("openrlhf-act %s: unusable label (%s): %s", reward_name, error, shown)
    logs = dict.fromkeys(log_keys, 0.0)
    logs["label_error"] = 1.0
    logs["response_chars"] = float(len(response))
    return RewardResult(value, 0.0, logs)
