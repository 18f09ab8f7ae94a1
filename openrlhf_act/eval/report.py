"""``eval report``: run directories side by side, per protocol, and against the paper's tables.

A run is named ``NAME=DIR`` (or by its folder name); runs sharing a name form one row, so one model's
ALFWorld, WebShop and ScienceWorld runs line up like a row of the paper's table. A column holds one
protocol and split (``eval protocols``), and its header names them: figures measured differently never
share a column. An ad-hoc episode selection gets a column of its own per environment, split and episode
count, and next-action accuracy one per environment. Runs sharing a name and a column (different seeds)
make one cell: mean ± sample standard deviation over the runs, with their number n. The paper's figures
stand only in the columns of the protocols it used (:data:`paper_results.PROTOCOLS`, our reading).
A run's prompting settings are part of its row: a run asked with thinking on or off gets " (thinking on)"
/ " (thinking off)" after its name (no suffix: the chat template's default), and a judgment run's
``rationale`` setting has a column, so runs asked differently are never averaged. General reasoning runs
(``eval reasoning``) get a table of their own: a column per lm_eval task, its main metric and document
count, the paper's v1 MATH-500 / GPQA-Diamond figures next to runs of the whole set.
Figures are read from each run's ``summary.json`` and seeds from its ``run.json``; score distributions
from ``episodes.jsonl``. Plots need matplotlib (the ``plots`` extra) and are written as PNG next to
``report.md``.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openrlhf_act.errors import UsageError
from openrlhf_act.eval import paper_results
from openrlhf_act.eval.judgment import JUDGMENT_COLUMNS, judgment_cells
from openrlhf_act.eval.plots import Bar
from openrlhf_act.eval.protocols import PROTOCOLS
from openrlhf_act.eval.reasoning import main_figure
from openrlhf_act.eval.summary import SUMMARY_JSON, fmt, markdown_table
from openrlhf_act.files import RUN_FILE, write_text

AD_HOC = "ad hoc"
FIGURE_TITLES = {"success_rate": "success %", "mean_score": "score 0-100", "accuracy": "next-action acc. %"}
# The figure an ad-hoc selection of an environment is reported by (success rate elsewhere).
_AD_HOC_FIGURES = {"scienceworld": "mean_score"}

REASONING = "reasoning"
# lm_eval metrics that are shares (0..1), reported as percentages like the paper's.
PERCENT_METRICS = {"exact_match", "math_verify", "acc", "acc_norm"}

# A column: (protocol, split), (AD_HOC, env, split, episodes), (NEXT_ACTION, env) or
# (REASONING, task, metric, documents, documents of the whole task).
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
        runs.append(Run((label if sep else directory.name) + prompting_suffix(summary), directory, summary, seed))
    return runs


def prompting_suffix(summary: dict[str, Any]) -> str:
    """What a run's label gets for its prompting settings: runs asked differently are other rows."""
    thinking = (summary.get("prompting") or {}).get("thinking")
    return f" (thinking {thinking})" if thinking else ""


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
    if column[0] == REASONING:
        return reasoning_title(column)
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
    _add_runs(table, runs, run_cells)
    if paper:
        columns = list(paper_columns(paper))
        values = paper_results.V1 if paper == "v1" else paper_results.V2
        for method, cells in values.items():
            table.paper[method] = {
                column: (cell, None) if isinstance(cell, float) else cell for column, cell in zip(columns, cells)
            }
    return table


def _add_runs(
    table: BenchmarkTable, runs: list[Run], cells_of: Callable[[dict[str, Any]], dict[Column, float]]
) -> None:
    """Each run's cells into ``table``: one value per label, column and seed."""
    seen: dict[tuple[str, Column, int | None], Path] = {}
    for run in runs:
        for column, value in cells_of(run.summary).items():
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


def _scale(metric: str) -> float:
    return 100.0 if metric.partition(",")[0] in PERCENT_METRICS else 1.0


def reasoning_cells(summary: dict[str, Any]) -> dict[Column, float]:
    """A reasoning run's main metric per task (shares as %), in columns that name the document count."""
    cells = {}
    if summary["kind"] != REASONING:
        return cells
    for task, figures in summary["tasks"].items():
        main = main_figure(figures)
        if main is None or main[1] is None:
            continue
        metric, value, _ = main
        column = (REASONING, task, metric, str(figures["samples"]), str(figures["samples_total"]))
        cells[column] = value * _scale(metric)
    return cells


def _paper_benchmark(column: Column) -> int | None:
    """The index in :data:`paper_results.REASONING_BENCHMARKS` of a reasoning column that is the paper's
    benchmark, whole (None otherwise)."""
    _, task, _, docs, _ = column
    if task not in paper_results.REASONING_TASKS:
        return None
    name, count = paper_results.REASONING_TASKS[task]
    return paper_results.REASONING_BENCHMARKS.index(name) if docs == str(count) else None


def reasoning_title(column: Column) -> str:
    """``[paper benchmark: ]task (documents), metric[ %]``; a group of tasks has no document count."""
    _, task, metric, docs, total = column
    index = _paper_benchmark(column)
    prefix = "" if index is None else f"{paper_results.REASONING_BENCHMARKS[index]}: "
    count = "" if docs == "None" else f" ({docs} docs)" if docs == total else f" ({docs} of {total} docs)"
    return f"{prefix}{task}{count}, {metric}{' %' if _scale(metric) == 100.0 else ''}"


def reasoning_table(runs: list[Run], paper: str | None) -> BenchmarkTable:
    """The general reasoning runs per label and task, with the paper's v1 figures (the only version that
    has them) in the columns of its benchmarks."""
    table = BenchmarkTable()
    _add_runs(table, runs, reasoning_cells)
    if paper:
        for method, figures in paper_results.REASONING_V1.items():
            table.paper[method] = {
                column: figures[index] for column in table.columns if (index := _paper_benchmark(column)) is not None
            }
    return table


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single run)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def _cell(values: list[float]) -> str:
    mean, std = mean_std(values)
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f} (n={len(values)})"


def _paper_cell(cell: tuple[float, float | None] | None) -> str:
    if cell is None:
        return "-"
    return f"{cell[0]:.2f}" + ("" if cell[1] is None else f" ± {cell[1]:.2f}")


def write_report(specs: list[str], out_dir: str | Path, *, paper: str | None = "v2", plots: bool = True) -> Path:
    """Write ``report.md`` (and PNG plots) into ``out_dir``; return the Markdown path."""
    runs = load_runs(specs)
    table = benchmark_table(runs, paper)
    reasoning = reasoning_table(runs, paper)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# Evaluation report", ""]
    lines += _benchmark_lines(table, paper)
    lines += _task_tables(runs)
    lines += _judgment_table(runs, paper)
    lines += _reasoning_lines(reasoning)
    if plots:
        from openrlhf_act.eval.plots import write_plots

        images = write_plots(out, **_plot_data(runs, table, paper), reasoning=_reasoning_bars(reasoning))
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in images] + [""]
    path = out / "report.md"
    write_text(path, "\n".join(lines))
    return path


def _plot_data(runs: list[Run], table: BenchmarkTable, paper: str | None) -> dict[str, Any]:
    """What :func:`openrlhf_act.eval.plots.write_plots` draws: the columns our runs fill (with the paper's
    figures in them), each episode run's columns, the judgment runs."""
    benchmarks = {
        column_title(column, paper_columns(paper).get(column)): bars
        for column in table.columns
        if (bars := _bars(table, column))
    }
    episodes = [
        (f"{run.label} [{column_title(column)}]", run.directory, run.summary, figures)
        for run in runs
        if run.summary["kind"] == "episodes"
        for column, figures in episode_columns(run.summary).items()
    ]
    judged = [(run.label, run.summary) for run in runs if run.summary["kind"] == "judgment"]
    return {"benchmarks": benchmarks, "episodes": episodes, "judged": judged}


def _bars(table: BenchmarkTable, column: Column) -> list[Bar]:
    """The bars of one column: our labels (mean ± std), then the paper's methods; none without ours."""
    bars = [
        (label if len(cells[column]) == 1 else f"{label} (n={len(cells[column])})", *mean_std(cells[column]), False)
        for label, cells in table.ours.items()
        if column in cells
    ]
    if bars:
        bars += [(f"paper: {m}", *cells[column], True) for m, cells in table.paper.items() if column in cells]
    return bars


def _reasoning_bars(table: BenchmarkTable) -> dict[str, list[Bar]]:
    """The reasoning columns in percent (the plot's 0-100 axis) -> their bars."""
    return {
        reasoning_title(column): bars
        for column in table.columns
        if _scale(column[2]) == 100.0 and (bars := _bars(table, column))
    }


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
        rows.append((f"paper {paper}: {method}", *(_paper_cell(cells.get(c)) for c in table.columns)))
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
    rows = [
        (f"**{run.label}**", *judgment_cells(run.summary["overall"]), run.summary.get("rationale", "free"))
        for run in judged
    ]
    if paper == "v2":
        blanks = ["-"] * (len(JUDGMENT_COLUMNS) - 2)
        for name, value in paper_results.JUDGMENT_V2.items():
            rationale = paper_results.JUDGMENT_V2_RATIONALE[name]
            rows.append((f"paper v2 (ALFWorld, 400 pairs): {name}", 400, f"{value:.2f}", *blanks, rationale))
    return ["## Judgment", "", *markdown_table(("run", *JUDGMENT_COLUMNS, "rationale"), rows), ""]


def _reasoning_lines(table: BenchmarkTable) -> list[str]:
    if not table.columns:
        return []
    rows = [
        (f"**{label}**", *(_cell(cells[c]) if c in cells else "-" for c in table.columns))
        for label, cells in table.ours.items()
    ]
    for method, cells in table.paper.items():
        rows.append((f"paper v1 (ALFWorld-trained): {method}", *(_paper_cell(cells.get(c)) for c in table.columns)))
    titles = [reasoning_title(c) for c in table.columns]
    lines = ["## General reasoning", "", *markdown_table(("run", *titles), rows), ""]
    lines.append(
        "lm-evaluation-harness tasks (`openrlhf-act eval reasoning`), each by its main metric; runs of one name "
        "are averaged over seeds (mean ± sample std, n runs)."
    )
    if table.paper:
        lines.append(
            f"Paper figures: {paper_results.SOURCE}, v1, trained on ALFWorld data only (mean ± std over 3 runs), "
            "next to runs of the whole benchmark; the paper does not state its prompt or answer extraction."
        )
    return [*lines, ""]
