"""What every benchmark module returns, and small timing helpers.

Each ``bench/bench_*.py`` module exposes ``run(quick: bool) -> list[BenchResult]``. Figures are
ratios against a baseline measured in the same run wherever the issue asks for one, because these
machines are noisy.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class BenchResult:
    """``ok`` says whether ``value`` meets ``target`` (a human-readable bound such as ">= 20000")."""

    name: str
    value: float
    unit: str
    target: str
    ok: bool
    note: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def at_least(name: str, value: float, bound: float, unit: str, note: str = "") -> BenchResult:
    return BenchResult(name, value, unit, f">= {bound:g}", value >= bound, note)


def at_most(name: str, value: float, bound: float, unit: str, note: str = "") -> BenchResult:
    return BenchResult(name, value, unit, f"<= {bound:g}", value <= bound, note)


def below(name: str, value: float, bound: float, unit: str, note: str = "") -> BenchResult:
    return BenchResult(name, value, unit, f"< {bound:g}", value < bound, note)


def percentile(values: list[float], q: float) -> float:
    """``q`` in [0, 100]; nearest-rank on the sorted values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (Linux ``/proc``); NaN where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
