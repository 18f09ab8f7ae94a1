"""PNG plots for ``eval report`` (matplotlib, imported here only: ``pip install 'openrlhf-act[plots]'``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openrlhf_act.errors import UsageError
from openrlhf_act.eval.summary import episode_scores

# One bar of the benchmark plot: (name, mean, std or None, the paper's).
Bar = tuple[str, float, float | None, bool]
# One episode run's column: (name, run directory, summary, that column's figures).
EpisodeSeries = tuple[str, Path, dict[str, Any], dict[str, Any]]


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UsageError("plots need matplotlib: pip install 'openrlhf-act[plots]' (or pass --no-plots)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_plots(
    out: Path,
    *,
    benchmarks: dict[str, list[Bar]],
    episodes: list[EpisodeSeries],
    judged: list[tuple[str, dict[str, Any]]],
    reasoning: dict[str, list[Bar]] | None = None,
) -> list[Path]:
    """Our runs next to the paper's per protocol column (``benchmarks``: column title -> bars), per-task
    success and score distributions (episode runs), position bias (judgment runs) and general reasoning
    next to the paper's (``reasoning``: task column title -> bars, in %)."""
    plt = _pyplot()
    written = []
    if benchmarks:
        written.append(_benchmarks(plt, benchmarks, out / "benchmarks.png"))
    if reasoning:
        written.append(_benchmarks(plt, reasoning, out / "reasoning.png"))
    if episodes:
        written.append(_per_task_success(plt, episodes, out / "per_task_success.png"))
        written.append(_score_distributions(plt, episodes, out / "score_distribution.png"))
    if judged:
        written.append(_position_bias(plt, judged, out / "position_bias.png"))
    return written


def _benchmarks(plt, benchmarks: dict[str, list[Bar]], path: Path) -> Path:
    """One panel per column: our runs' mean ± std over seeds, then the paper's methods (grey); 0-100 axes."""
    fig, axes = plt.subplots(1, len(benchmarks), figsize=(4.5 * len(benchmarks), 4.5), squeeze=False)
    for ax, (title, bars) in zip(axes[0], benchmarks.items()):
        positions = list(range(len(bars)))
        ax.bar(
            positions,
            [mean for _, mean, _, _ in bars],
            yerr=[std or 0.0 for _, _, std, _ in bars],
            color=["0.7" if paper else "C0" for *_, paper in bars],
        )
        ax.set_xticks(positions)
        ax.set_xticklabels([name for name, *_ in bars], rotation=40, ha="right", fontsize=7)
        ax.set_ylim(0, 105)
        ax.set_title(title, fontsize=8, wrap=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _per_task_success(plt, runs, path: Path) -> Path:
    series: dict[str, dict[str, float]] = {}
    for name, _, _, figures in runs:
        for task, t in figures["tasks"].items():
            series.setdefault(name, {})[task] = t["success_rate"] or 0.0
    tasks = sorted({t for values in series.values() for t in values})
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(tasks) + 2), 4.5))
    for i, (name, values) in enumerate(series.items()):
        positions = [x + i * width for x in range(len(tasks))]
        ax.bar(positions, [values.get(t, 0.0) for t in tasks], width, label=name)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(tasks))])
    ax.set_xticklabels(tasks, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("success %")
    ax.set_ylim(0, 105)
    ax.set_title("Success rate per task")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _score_distributions(plt, runs, path: Path) -> Path:
    labels = [name for name, *_ in runs]
    data = [episode_scores(directory, summary) or [0.0] for _, directory, summary, _ in runs]
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(labels) + 2), 4))
    ax.boxplot(data, showmeans=True)
    ax.set_xticks(range(1, len(labels) + 1))
    ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("episode score (0-100)")
    ax.set_ylim(-5, 105)
    ax.set_title("Episode score distribution")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _position_bias(plt, judged, path: Path) -> Path:
    keys = [
        ("pred_first", "picks Action 1 %"),
        ("gold_first", "gold is Action 1 %"),
        ("accuracy_gold_first", "acc. gold first %"),
        ("accuracy_gold_second", "acc. gold second %"),
        ("swap_consistency", "swap consistent %"),
    ]
    width = 0.8 / len(judged)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, (label, summary) in enumerate(judged):
        values = [summary["overall"][k] or 0.0 for k, _ in keys]
        ax.bar([x + i * width for x in range(len(keys))], values, width, label=label)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(keys))])
    ax.set_xticklabels([title for _, title in keys], rotation=15, fontsize=8)
    ax.axhline(50, color="grey", linewidth=0.8, linestyle="--")
    ax.set_ylim(0, 105)
    ax.set_title("Judgment position bias")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
