"""``eval report``: run directories side by side, per protocol, and against the paper's tables.

A run is named ``NAME=DIR`` (or by its folder name); runs sharing a name form one row, so one model's
ALFWorld, WebShop and ScienceWorld runs line up like a row of the paper's table. A column holds one
protocol and split (``eval protocols``), and its header names them: figures measured differently never
share a column. An ad-hoc episode selection gets a column of its own per environment, split and episode
count, and next-action accuracy one per environment. Runs sharing a name and a column (different seeds)
make one cell: mean ± sample standard deviation over the runs, with their number n. The paper's figures
stand only in the columns of the protocols it used (:data:`paper_results.PROTOCOLS`, our reading).
Figures are read from each run's ``summary.json`` and seeds from its ``run.json``; score distributions
from ``episodes.jsonl``. Plots need matplotlib (the ``plots`` extra) and are written as PNG next to
``report.md``.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openrlhf_act.errors import UsageError
from openrlhf_act.eval import paper_results
from openrlhf_act.eval.judgment import JUDGMENT_COLUMNS, judgment_cells
from openrlhf_act.eval.protocols import PROTOCOLS
from openrlhf_act.eval.summary import SUMMARY_JSON, fmt, markdown_table
from openrlhf_act.files import RUN_FILE, write_text

AD_HOC = "ad hoc"
FIGURE_TITLES = {"success_rate": "success %", "mean_score": "score 0-100", "accuracy": "next-action acc. %"}
# The figure an ad-hoc selection of an environment is reported by (success rate elsewhere).
_AD_HOC_FIGURES = {"scienceworld": "mean_score"}

# A column: (protocol, split), (AD_HOC, env, split, episodes) or (NEXT_ACTION, env).
Column = tuple[str, ...]


@dataclass(frozen=True)
class Run:
    """One run directory of the report: its label, figures and seed."""

    label: str
    directory: Path
    summary: dict[str, Any]
    seed: int | None


@dataclass
class BenchmarkTable:
    """Our runs and the paper's figures per column (what the Markdown table and the benchmark plot show)."""

    columns: list[Column] = field(default_factory=list)
    ours: dict[str, dict[Column, list[float]]] = field(default_factory=dict)  # label -> column -> per seed
    paper: dict[str, dict[Column, tuple[float, float | None]]] = field(default_factory=dict)  # (mean, std)


def load_runs(specs: list[str]) -> list[Run]:
    """One :class:`Run` per ``NAME=DIR`` or ``DIR``."""
    runs = []
    for spec in specs:
        label, sep, path = spec.partition("=")
        directory = Path(path if sep else spec)
        summary_path = directory / SUMMARY_JSON
        if not summary_path.is_file():
            raise UsageError(f"{directory} is not an evaluation run (no summary.json)")
        summary = json.loads(summary_path.read_text())
        config = json.loads((directory / RUN_FILE).read_text()) if (directory / RUN_FILE).is_file() else {}
        seed = summary.get("seed", config.get("seed"))
        runs.append(Run(label if sep else directory.name, directory, summary, seed))
    return runs


def episode_columns(summary: dict[str, Any]) -> dict[Column, dict[str, Any]]:
    """The columns an episodes run fills: column -> that split's figures (``micro``, ``macro``, ``tasks``)."""
    protocol = summary.get("protocol")
    if not protocol:
        return {
            (AD_HOC, summary["env"], split, str(figures["micro"]["episodes"])): figures
            for split, figures in summary["splits"].items()
        }
    if protocol["name"] not in PROTOCOLS:
        raise UsageError(f"a run names protocol {protocol['name']!r}, which this version does not know")
    if len(summary["splits"]) > 1:
        raise UsageError(f"a run of protocol {protocol['name']} holds several splits: {', '.join(summary['splits'])}")
    figures = list(summary["splits"].values())  # none when no episode finished yet
    return {(protocol["name"], protocol["split"]): figures[0]} if figures else {}


def figure_of(column: Column) -> str:
    if column[0] == paper_results.NEXT_ACTION:
        return "accuracy"
    if column[0] == AD_HOC:
        return _AD_HOC_FIGURES.get(column[1], "success_rate")
    return PROTOCOLS[column[0]].figure


def run_cells(summary: dict[str, Any]) -> dict[Column, float]:
    """The headline figure of one run per column it fills."""
    cells = {}
    if summary["kind"] == "episodes":
        for column, figures in episode_columns(summary).items():
            value = figures["micro"][figure_of(column)]
            if value is not None:
                cells[column] = value
    elif summary["kind"] == "next_action":
        for env, figures in summary["envs"].items():
            cells[(paper_results.NEXT_ACTION, env)] = figures["overall"]["accuracy"]
    return cells


def column_title(column: Column, benchmark: str | None = None) -> str:
    """A header that names the column's protocol (and the paper's benchmark when it is one of its columns)."""
    figure = FIGURE_TITLES[figure_of(column)]
    if column[0] == paper_results.NEXT_ACTION:
        what = f"{column[1]} next-action (held-out states)"
    elif column[0] == AD_HOC:
        what = f"{column[1]} {column[2]}, ad hoc ({column[3]} episodes)"
    else:
        what = f"{column[0]} {column[1]} ({PROTOCOLS[column[0]].selection(column[1]).count} episodes)"
    prefix = f"{paper_results.BENCHMARK_TITLES[benchmark].split(' (')[0]}: " if benchmark else ""
    return f"{prefix}{what}, {figure}"


def paper_columns(version: str | None) -> dict[Column, str]:
    """The paper's columns in ``version``: column -> benchmark."""
    if not version:
        return {}
    columns = {}
    for benchmark in paper_results.BENCHMARKS:
        name = paper_results.protocol_of(benchmark, version)
        if name == paper_results.NEXT_ACTION:
            columns[(name, "scienceworld")] = benchmark
        else:
            columns[(name, paper_results.PROTOCOLS[benchmark][1])] = benchmark
    return columns


def benchmark_table(runs: list[Run], paper: str | None) -> BenchmarkTable:
    """Our runs per label and column (one value per seed) and the paper's figures in its columns."""
    table = BenchmarkTable(columns=list(paper_columns(paper)))
    seen: dict[tuple[str, Column, int | None], Path] = {}
    for run in runs:
        for column, value in run_cells(run.summary).items():
            key = (run.label, column, run.seed)
            if key in seen:
                raise UsageError(
                    f"{seen[key]} and {run.directory} are both {run.label!r} in {column_title(column)} with seed "
                    f"{run.seed}: name them apart (NAME=DIR) or give runs of one model different --seed"
                )
            seen[key] = run.directory
            if column not in table.columns:
                table.columns.append(column)
            table.ours.setdefault(run.label, {}).setdefault(column, []).append(value)
    if paper:
        columns = list(paper_columns(paper))
        values = paper_results.V1 if paper == "v1" else paper_results.V2
        for method, cells in values.items():
            table.paper[method] = {
                column: (cell, None) if isinstance(cell, float) else cell for column, cell in zip(columns, cells)
            }
    return table


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single run)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def _cell(values: list[float]) -> str:
    mean, std = mean_std(values)
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f} (n={len(values)})"


def write_report(specs: list[str], out_dir: str | Path, *, paper: str | None = "v2", plots: bool = True) -> Path:
    """Write ``report.md`` (and PNG plots) into ``out_dir``; return the Markdown path."""
    runs = load_runs(specs)
    table = benchmark_table(runs, paper)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# Evaluation report", ""]
    lines += _benchmark_lines(table, paper)
    lines += _task_tables(runs)
    lines += _judgment_table(runs, paper)
    if plots:
        from openrlhf_act.eval.plots import write_plots

        images = write_plots(out, **_plot_data(runs, table, paper))
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in images] + [""]
    path = out / "report.md"
    write_text(path, "\n".join(lines))
    return path


def _plot_data(runs: list[Run], table: BenchmarkTable, paper: str | None) -> dict[str, Any]:
    """What :func:`openrlhf_act.eval.plots.write_plots` draws: the columns our runs fill (with the paper's
    figures in them), each episode run's columns, the judgment runs."""
    benchmarks = {}
    for column in table.columns:
        bars = [
            (label if len(cells[column]) == 1 else f"{label} (n={len(cells[column])})", *mean_std(cells[column]), False)
            for label, cells in table.ours.items()
            if column in cells
        ]
        if bars:
            bars += [(f"paper: {m}", *cells[column], True) for m, cells in table.paper.items() if column in cells]
            benchmarks[column_title(column, paper_columns(paper).get(column))] = bars
    episodes = [
        (f"{run.label} [{column_title(column)}]", run.directory, run.summary, figures)
        for run in runs
        if run.summary["kind"] == "episodes"
        for column, figures in episode_columns(run.summary).items()
    ]
    judged = [(run.label, run.summary) for run in runs if run.summary["kind"] == "judgment"]
    return {"benchmarks": benchmarks, "episodes": episodes, "judged": judged}


def _benchmark_lines(table: BenchmarkTable, paper: str | None) -> list[str]:
    if not table.columns:
        return []
    benchmarks = paper_columns(paper)
    titles = [column_title(c, benchmarks.get(c)) for c in table.columns]
    rows = [
        (f"**{label}**", *(_cell(cells[c]) if c in cells else "-" for c in table.columns))
        for label, cells in table.ours.items()
    ]
    for method, cells in table.paper.items():
        paper_cells = (
            "-" if c not in cells else f"{cells[c][0]:.2f}" + ("" if cells[c][1] is None else f" ± {cells[c][1]:.2f}")
            for c in table.columns
        )
        rows.append((f"paper {paper}: {method}", *paper_cells))
    lines = ["## Benchmarks", "", *markdown_table(("run", *titles), rows), ""]
    lines.append(
        "Each column is one protocol and split (`openrlhf-act eval protocols`); runs of one name in one column "
        "are averaged over seeds (mean ± sample std, n runs)."
    )
    if paper:
        lines.append(
            f"Paper figures: {paper_results.SOURCE}, {paper}, in the columns of the protocols we read it as using "
            "(`openrlhf_act/eval/paper_results.py`)."
        )
    return [*lines, ""]


def _task_tables(runs: list[Run]) -> list[str]:
    """Per task and column: success % / score, averaged over the runs of one name."""
    lines = []
    groups: dict[Column, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if run.summary["kind"] == "episodes":
            for column, figures in episode_columns(run.summary).items():
                groups[column][run.label].append(figures["tasks"])
    for column, by_label in groups.items():
        labels = list(by_label)
        tasks = sorted({t for per_run in by_label.values() for figures in per_run for t in figures})
        rows = []
        for task in tasks:
            cells = []
            for label in labels:
                found = [figures[task] for figures in by_label[label] if task in figures]
                cells.append(_task_cell(found))
            rows.append((task, *cells))
        lines += [f"## {column_title(column)}: success % / score per task", ""]
        lines += markdown_table(("task", *labels), rows)
        lines.append("")
    return lines


def _task_cell(found: list[dict[str, Any]]) -> str:
    if not found:
        return "-"
    success, score = (_mean([t[key] for t in found if t[key] is not None]) for key in ("success_rate", "mean_score"))
    n = f" (n={len(found)})" if len(found) > 1 else ""
    return f"{fmt(success, 1)} / {fmt(score, 1)}{n}"


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _judgment_table(runs: list[Run], paper: str | None) -> list[str]:
    judged = [run for run in runs if run.summary["kind"] == "judgment"]
    if not judged:
        return []
    rows = [(f"**{run.label}**", *judgment_cells(run.summary["overall"])) for run in judged]
    if paper == "v2":
        for name, value in paper_results.JUDGMENT_V2.items():
            rows.append((f"paper v2 (ALFWorld, 400 pairs): {name}", 400, f"{value:.2f}", *["-"] * 5))
    return ["## Judgment", "", *markdown_table(("run", *JUDGMENT_COLUMNS), rows), ""]
