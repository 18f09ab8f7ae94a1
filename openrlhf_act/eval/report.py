"""``eval report``: several run directories side by side, and against the paper's tables.

A run is named ``NAME=DIR`` (or by its folder name); runs sharing a name form one row, so one model's
ALFWorld, WebShop and ScienceWorld runs line up like a row of the paper's table. Figures are read from
each run's ``summary.json``; score distributions from ``episodes.jsonl``. Plots need matplotlib (the
``plots`` extra) and are written as PNG next to ``report.md``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from openrlhf_act.errors import UsageError
from openrlhf_act.eval import paper_results
from openrlhf_act.eval.judgment import JUDGMENT_COLUMNS, judgment_cells
from openrlhf_act.eval.summary import SUMMARY_JSON, fmt, markdown_table
from openrlhf_act.files import write_text

# (environment, split) of an episodes run -> the paper's benchmark column
_EPISODE_COLUMNS = {
    ("alfworld", "valid_seen"): ("alfworld_seen", "success_rate"),
    ("alfworld", "valid_unseen"): ("alfworld_unseen", "success_rate"),
    ("webshop", "test"): ("webshop", "success_rate"),
    ("scienceworld", "test"): ("scienceworld", "mean_score"),
}


def load_runs(specs: list[str]) -> list[tuple[str, Path, dict[str, Any]]]:
    """``(label, directory, summary)`` per ``NAME=DIR`` or ``DIR``."""
    runs = []
    for spec in specs:
        label, sep, path = spec.partition("=")
        directory = Path(path if sep else spec)
        summary_path = directory / SUMMARY_JSON
        if not summary_path.is_file():
            raise UsageError(f"{directory} is not an evaluation run (no summary.json)")
        runs.append((label if sep else directory.name, directory, json.loads(summary_path.read_text())))
    return runs


def benchmark_cells(summary: dict[str, Any]) -> dict[str, tuple[float, str]]:
    """The paper columns one run fills: column -> (value, metric)."""
    cells = {}
    if summary["kind"] == "episodes":
        for split, figures in summary["splits"].items():
            column = _EPISODE_COLUMNS.get((summary["env"], split))
            if column and figures["micro"][column[1]] is not None:
                metric = "episode score" if column[1] == "mean_score" else "success %"
                cells[column[0]] = (figures["micro"][column[1]], metric)
    elif summary["kind"] == "next_action" and "scienceworld" in summary["envs"]:
        cells["scienceworld"] = (summary["envs"]["scienceworld"]["overall"]["accuracy"], "next-action acc. %")
    return cells


def write_report(specs: list[str], out_dir: str | Path, *, paper: str | None = "v2", plots: bool = True) -> Path:
    """Write ``report.md`` (and PNG plots) into ``out_dir``; return the Markdown path."""
    runs = load_runs(specs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# Evaluation report", ""]
    lines += _benchmark_table(runs, paper)
    lines += _task_tables(runs)
    lines += _judgment_table(runs, paper)
    if plots:
        from openrlhf_act.eval.plots import write_plots

        images = write_plots(runs, out)
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in images] + [""]
    path = out / "report.md"
    write_text(path, "\n".join(lines))
    return path


def _benchmark_table(runs, paper: str | None) -> list[str]:
    rows: dict[str, dict[str, str]] = defaultdict(dict)
    for label, _, summary in runs:
        for column, (value, metric) in benchmark_cells(summary).items():
            rows[label][column] = f"{value:.2f}" + (" (next-action)" if metric.startswith("next") else "")
    if not rows and not paper:
        return []
    titles = [paper_results.BENCHMARK_TITLES[b] for b in paper_results.BENCHMARKS]
    if paper:
        titles[-1] += f" ({paper_results.SCIENCEWORLD_METRIC[paper]})"
    lines = ["## Benchmarks", "", "| run | " + " | ".join(titles) + " |", "|---" * (len(titles) + 1) + "|"]
    for label, cells in rows.items():
        lines.append(f"| **{label}** | " + " | ".join(cells.get(b, "-") for b in paper_results.BENCHMARKS) + " |")
    if paper:
        for method, cells in paper_results.paper_rows(paper).items():
            lines.append(f"| paper {paper}: {method} | " + " | ".join(cells) + " |")
        lines += ["", f"Paper figures: {paper_results.SOURCE}, {paper}."]
    return [*lines, ""]


def _task_tables(runs) -> list[str]:
    lines = []
    groups: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for label, _, summary in runs:
        if summary["kind"] == "episodes":
            for split, figures in summary["splits"].items():
                groups[summary["env"], split][label] = figures["tasks"]
    for (env, split), by_run in groups.items():
        labels = list(by_run)
        tasks = sorted({t for figures in by_run.values() for t in figures})
        lines += [
            f"## {env} {split}: success % / score per task",
            "",
            "| task | " + " | ".join(labels) + " |",
            "|---" * (len(labels) + 1) + "|",
        ]
        for task in tasks:
            cells = []
            for label in labels:
                t = by_run[label].get(task)
                cells.append(f"{fmt(t['success_rate'], 1)} / {fmt(t['mean_score'], 1)}" if t else "-")
            lines.append(f"| {task} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _judgment_table(runs, paper: str | None) -> list[str]:
    judged = [(label, s) for label, _, s in runs if s["kind"] == "judgment"]
    if not judged:
        return []
    rows = [(f"**{label}**", *judgment_cells(summary["overall"])) for label, summary in judged]
    if paper == "v2":
        for name, value in paper_results.JUDGMENT_V2.items():
            rows.append((f"paper v2 (ALFWorld, 400 pairs): {name}", 400, f"{value:.2f}", *["-"] * 5))
    return ["## Judgment", "", *markdown_table(("run", *JUDGMENT_COLUMNS), rows), ""]
