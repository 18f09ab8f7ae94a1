"""Aggregate repeated log records: one example per reason and period, then a count.

A batch with a million broken labels would otherwise write a million identical warnings (hundreds of MB,
and minutes of a reward service's event loop). The first record of each reason (its logger, level and
message template) in a period is logged as it comes; the rest are counted, and one summary line per reason,
with the first suppressed message as its example, is logged when the period is over (on the next record of
that logger, or on :meth:`RepeatedRecords.flush`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

SUMMARY_ATTR = "openrlhf_act_summary"
_EXAMPLE_CHARS = 300


class RepeatedRecords(logging.Filter):
    """A logger filter (thread-safe: rewards run in OpenRLHF's thread pool)."""

    def __init__(self, period_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.period_s = period_s
        self._clock = clock
        self._lock = threading.Lock()
        self._start = clock()
        # reason -> [suppressed count, first suppressed message, logger name, level]
        self._seen: dict[tuple, list] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, SUMMARY_ATTR, False):
            return True
        reason = (record.name, record.levelno, str(record.msg))
        with self._lock:
            due = self._drain_locked() if self._clock() - self._start >= self.period_s else ([], 0.0)
            entry = self._seen.get(reason)
            if entry is None:
                self._seen[reason] = [0, "", record.name, record.levelno]
            else:
                if entry[0] == 0:
                    entry[1] = record.getMessage()[:_EXAMPLE_CHARS]
                entry[0] += 1
        _log_summaries(*due)
        return entry is None

    def flush(self) -> None:
        """Log the summaries of the period so far and start a new one (at shutdown, or from a timer)."""
        with self._lock:
            due = self._drain_locked()
        _log_summaries(*due)

    def _drain_locked(self) -> tuple[list[list], float]:
        """The reasons with suppressed records, and the seconds their period lasted."""
        due = [entry for entry in self._seen.values() if entry[0]]
        self._seen.clear()
        now = self._clock()
        elapsed, self._start = now - self._start, now
        return due, elapsed


def _log_summaries(entries: list[list], elapsed_s: float) -> None:
    for count, example, name, level in entries:
        logging.getLogger(name).log(
            level,
            "openrlhf-act: %d more like this in the last %.0f s (logged once per reason); e.g. %s",
            count,
            elapsed_s,
            example,
            extra={SUMMARY_ATTR: True},
        )


# The one instance: each logger that sees per-sample or per-connection floods attaches it, and the reward
# service flushes it on a timer.
REPEATS = RepeatedRecords()
