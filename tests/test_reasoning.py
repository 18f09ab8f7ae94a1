"""`eval reasoning` through the real lm-evaluation-harness on a local task and a scripted model (hf and
vLLM backends), its resume and errors; `eval report`'s general reasoning table and the prompting settings
that keep report rows apart (thinking on / off, the judgment rationale)."""

from __future__ import annotations

import importlib.metadata
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from openrlhf_act.errors import UsageError
from openrlhf_act.eval.summary import SUMMARY_JSON
from openrlhf_act.files import read_jsonl, write_json
from tests.conftest import have, requires_vllm
from tests.test_eval import cli

requires_lm_eval = pytest.mark.skipif(not have("lm_eval"), reason="pip install 'openrlhf-act[reasoning]'")
# vLLM on the CPU as the project's vLLM sampler runs it (data_tools/samplers/vllm_offline.py)
VLLM_CPU_ARGS = (
    "dtype=float32",
    "enforce_eager=true",
    f"kv_cache_memory_bytes={256 * 2**20}",
    "enable_chunked_prefill=false",
    "max_model_len=512",
)


@pytest.fixture(scope="module")
def answers_four(tmp_path_factory) -> str:
    """A model that answers every question "4" (greedy decoding takes its first reply)."""
    from openrlhf_act.devtools.scripted_model import build_scripted_model

    return str(build_scripted_model(tmp_path_factory.mktemp("answers-four"), ["4", "5"]))


def _arithmetic_task(directory: Path) -> Path:
    """A local lm_eval task: three sums, two of which are 4, scored by exact match."""
    items = [("2+2=", "4"), ("1+3=", "4"), ("2+3=", "5")]
    data = directory / "sums.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in items))
    tasks = directory / "tasks"
    tasks.mkdir()
    (tasks / "tiny_sums.yaml").write_text(
        f"""task: tiny_sums
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{question}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n\\n"]
  max_gen_toks: 8
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""
    )
    return tasks


def _evaluate(model: str, tasks: Path, out: Path, *extra: str) -> int:
    return cli(
        "reasoning", "--model", model, "--tasks", "tiny_sums", "--include-path", str(tasks), "--out", str(out), *extra
    )


@requires_lm_eval
def test_reasoning_scores_a_local_task_resumes_and_reports(tmp_path, answers_four, monkeypatch):
    tasks = _arithmetic_task(tmp_path)
    out = tmp_path / "run"
    assert _evaluate(answers_four, tasks, out, "--backend", "hf", "--batch-size", "4") == 0
    summary = json.loads((out / SUMMARY_JSON).read_text())
    task = summary["tasks"]["tiny_sums"]
    assert summary["kind"] == "reasoning" and summary["policy"] == {"backend": "hf", "model": answers_four}
    assert summary["lm_eval"] == importlib.metadata.version("lm_eval")
    assert summary["settings"]["apply_chat_template"] is True  # the tokenizer has a chat template
    assert task["main_metric"] == "exact_match,none" and (task["samples"], task["samples_total"]) == (3, 3)
    assert task["metrics"]["exact_match,none"]["value"] == pytest.approx(2 / 3)
    assert task["metrics"]["exact_match,none"]["stderr"] == pytest.approx(1 / 3)
    full = json.loads((out / "lm_eval_results.json").read_text())
    assert full["results"]["tiny_sums"]["exact_match,none"] == pytest.approx(2 / 3)
    samples = list(read_jsonl(out / "lm_eval" / "samples_tiny_sums.jsonl"))
    assert [s["resps"][0][0] for s in samples] == ["4", "4", "4"]
    assert samples[0]["arguments"][0][0].startswith("<|im_start|>user\n2+2=")  # asked through the chat template
    assert "| tiny_sums | exact_match,none (main) | 0.6667 | 0.3333 | 3/3 |" in (out / "summary.md").read_text()

    # the same settings again: nothing is evaluated, no model is loaded
    import lm_eval
    from lm_eval.api import registry

    def refuse(*args: Any, **kwargs: Any):
        raise AssertionError("a finished task was evaluated again")

    monkeypatch.setattr(lm_eval, "simple_evaluate", refuse)
    monkeypatch.setattr(registry, "get_model", refuse)
    assert _evaluate(answers_four, tasks, out, "--backend", "hf", "--batch-size", "4") == 0
    assert json.loads((out / SUMMARY_JSON).read_text()) == summary
    with pytest.raises(UsageError, match="different limit"):
        _evaluate(answers_four, tasks, out, "--backend", "hf", "--limit", "2")

    assert cli("report", f"act={out}", "--out", str(tmp_path / "report"), "--no-plots") == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| run | tiny_sums (3 docs), exact_match,none % |" in report
    assert "| **act** | 66.67 |" in report


@requires_lm_eval
def test_reasoning_errors_name_the_fix(tmp_path, answers_four, monkeypatch):
    tasks = _arithmetic_task(tmp_path)
    with pytest.raises(UsageError, match=r"tiny_sum \(did you mean tiny_sums\?\).*lm-eval ls tasks"):
        cli("reasoning", "--model", answers_four, "--tasks", "tiny_sum", "--include-path", str(tasks), "--out", "x")
    assert not Path("x").exists()
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # not installed
    with pytest.raises(UsageError, match=r"pip install 'openrlhf-act\[reasoning\]'"):
        _evaluate(answers_four, tasks, tmp_path / "run", "--backend", "hf")


@requires_lm_eval
@requires_vllm
def test_reasoning_through_vllm(tmp_path, answers_four):
    tasks = _arithmetic_task(tmp_path)
    out = tmp_path / "run"
    model_args = [arg for pair in VLLM_CPU_ARGS for arg in ("--model-arg", pair)]
    assert _evaluate(answers_four, tasks, out, "--backend", "vllm", "--thinking", "off", *model_args) == 0
    summary = json.loads((out / SUMMARY_JSON).read_text())
    assert summary["tasks"]["tiny_sums"]["metrics"]["exact_match,none"]["value"] == pytest.approx(2 / 3)
    assert summary["prompting"] == {"thinking": "off"}
    assert json.loads((out / "run.json").read_text())["model_args"]["enforce_eager"] is True


# ---- eval report ---------------------------------------------------------------------------------------
def _reasoning_run(directory: Path, figures: dict[str, tuple[str, float, int, int]], **extra: Any) -> str:
    """A reasoning run's summary.json by hand: task -> (main metric, value, documents, of documents)."""
    tasks = {
        task: {
            "main_metric": metric,
            "metrics": {metric: {"value": value, "stderr": 0.01}},
            "samples": docs,
            "samples_total": total,
            "version": 1.0,
        }
        for task, (metric, value, docs, total) in figures.items()
    }
    summary = {"kind": "reasoning", "policy": {"backend": "vllm", "model": "m"}, "tasks": tasks, **extra}
    write_json(directory / SUMMARY_JSON, summary)
    return str(directory)


def _episodes_run(directory: Path, success: float, **extra: Any) -> str:
    micro = {"episodes": 2, "success_rate": success, "mean_score": success}
    split = {"micro": micro, "macro": {}, "tasks": {}}
    summary = {"kind": "episodes", "env": "webshop", "protocol": None, "splits": {"test": split}, **extra}
    write_json(directory / SUMMARY_JSON, summary)
    return str(directory)


def _judgment_run(directory: Path, accuracy: float, **extra: Any) -> str:
    keys = ("accuracy", "malformed", "pred_first", "accuracy_gold_first", "accuracy_gold_second", "swap_consistency")
    overall = {"rows": 10, **dict.fromkeys(keys, 0.0), "accuracy": accuracy}
    write_json(directory / SUMMARY_JSON, {"kind": "judgment", "policy": {}, "overall": overall, "tasks": {}, **extra})
    return str(directory)


def _table(report: str, heading: str) -> list[str]:
    """The lines of the first Markdown table under ``heading``."""
    lines = report.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i, line in enumerate(lines[start:], start) if not line.startswith("|")), len(lines))
    return lines[start:end]


def test_report_general_reasoning_next_to_the_paper(tmp_path):
    math, gpqa = ("math_verify,none", "exact_match,flexible-extract")
    runs = [
        "act=" + _reasoning_run(tmp_path / "a0", {"minerva_math500": (math, 0.88, 500, 500)}, seed=0),
        "act="
        + _reasoning_run(
            tmp_path / "a1",
            {"minerva_math500": (math, 0.86, 500, 500), "gpqa_diamond_cot_zeroshot": (gpqa, 0.5, 198, 198)},
            seed=1,
        ),
        "il=" + _reasoning_run(tmp_path / "il", {"minerva_math500": (math, 0.5, 50, 500)}, seed=0),
        "act="
        + _reasoning_run(
            tmp_path / "think", {"minerva_math500": (math, 0.9, 500, 500)}, seed=0, prompting={"thinking": "on"}
        ),
    ]
    plots = have("matplotlib")
    assert cli("report", *runs, "--out", str(tmp_path / "report"), *([] if plots else ["--no-plots"])) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    table = _table(report, "## General reasoning")
    assert table[0] == (
        "| run | MATH-500: minerva_math500 (500 docs), math_verify,none % "
        "| GPQA-Diamond: gpqa_diamond_cot_zeroshot (198 docs), exact_match,flexible-extract % "
        "| minerva_math500 (50 of 500 docs), math_verify,none % |"
    )
    assert "| **act** | 87.00 ± 1.41 (n=2) | 50.00 | - |" in table
    assert "| **il** | - | - | 50.00 |" in table
    assert "| **act (thinking on)** | 90.00 | - | - |" in table  # never averaged with the runs of thinking default
    assert "| paper v1 (ALFWorld-trained): ACT | 87.73 ± 0.19 | 53.37 ± 0.63 | - |" in table
    if plots:
        assert (tmp_path / "report" / "reasoning.png").stat().st_size > 1000
    assert cli("report", *runs[:1], "--out", str(tmp_path / "bare"), "--paper", "none", "--no-plots") == 0
    assert "paper v1" not in (tmp_path / "bare" / "report.md").read_text()


def test_report_keeps_prompting_settings_apart(tmp_path):
    runs = [
        "base=" + _episodes_run(tmp_path / "default", 50.0),
        "base=" + _episodes_run(tmp_path / "off", 10.0, prompting={"thinking": "off"}),
        "base=" + _episodes_run(tmp_path / "on", 30.0, prompting={"thinking": "on"}, seed=1),
        "act=" + _judgment_run(tmp_path / "free", 86.0, rationale="free"),
        "act=" + _judgment_run(tmp_path / "none", 80.0, rationale="none"),
        "act=" + _judgment_run(tmp_path / "old", 85.0),  # written before the setting existed: free
    ]
    assert cli("report", *runs, "--out", str(tmp_path / "report"), "--no-plots") == 0
    report = (tmp_path / "report" / "report.md").read_text()
    benchmarks = _table(report, "## Benchmarks")
    rows = {line.split("|")[1].strip(): line for line in benchmarks[2:] if line.startswith("| **")}
    assert set(rows) >= {"**base**", "**base (thinking off)**", "**base (thinking on)**"}
    assert "50.00 |" in rows["**base**"] and "10.00 |" in rows["**base (thinking off)**"]
    judgment = _table(report, "## Judgment")
    assert judgment[0].endswith("| rationale |")
    assert [line.rsplit("|", 2)[1].strip() for line in judgment[2:5]] == ["free", "none", "free"]
    assert "| paper v2 (ALFWorld, 400 pairs): rationale removed | 400 | 80.75 |" in report
    assert any(
        line.startswith("| paper v2 (ALFWorld, 400 pairs): rationale removed") and "| none |" in line
        for line in judgment
    )
