"""Learning check: does OpenRLHF's real GRPO loop with our act_judgment reward teach a tiny model to judge?

The task (openrlhf_act/devtools/learning_task.py) makes the right action depend on the state: the same two
candidates ("unlock red door", "open red door") are right in one state and wrong in another. Rows are made by
``data build``'s own function (both candidate orders, balanced), held-out pairs never seen in training. The
model is a 2x256 Qwen2 whose tokenizer is fitted to the task, the framing texts single tokens (prompts of ~40
tokens). Per seed:

1. the supervised ceiling (first seed): recipes/sft_choice.sh on the *correct* verdicts, held-out accuracy;
2. the format stage: sft_choice.sh on verdicts drawn *at random* (it teaches the verdict format, not the
   task: held-out accuracy stays near 0.5);
3. GRPO: recipes/act.sh PRESET=cpu (OpenRLHF's train_ppo_ray) with the act_judgment reward.

Held-out accuracy (``openrlhf-act eval judgment``, vLLM) is measured after 2 and 3; target >= 0.8 with
``pred_first`` within 0.1 of ``gold_first``. The share of malformed verdicts sampled by the first GRPO step
(rollouts of the starting policy) is printed; a run whose sampled malformed share stays above 50 % for 10
steps is reported as collapsed, with its step. The curve (OpenRLHF's own train/accuracy and train/malformed
per step) is written as a PNG.

    python bench/run.py --only learning   (BENCH_LEARNING_SEEDS=0,1,2; BENCH_LEARNING_OUT=DIR keeps the runs)
    python bench/run.py --only learning --quick   (seed 0, no ceiling)
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench.common import BenchResult, at_least, at_most

ROOT = Path(__file__).resolve().parents[1]
WIDTH = 256
TARGET = 0.8
COLLAPSE_SHARE, COLLAPSE_STEPS = 0.5, 10
FORMAT = {"SFT_BATCH": "16", "SFT_MICRO_BATCH": "16", "SFT_MAX_LEN": "512", "SFT_CHOICE_LR": "1e-3", "EPOCHS": "8"}
GRPO = {
    "ACT_LR": "2e-4", "GROUP_SIZE": "8", "ROLLOUT_BATCH": "16", "TRAIN_BATCH": "16", "MICRO_ROLLOUT_BATCH": "16",
    "MICRO_TRAIN_BATCH": "16", "PROMPT_MAX_LEN": "512", "GENERATE_MAX_LEN": "16", "KL_COEF": "1e-2",
    "TEMPERATURE": "1.0", "EPOCHS": "10",
}  # fmt: skip


def write_task(data: Path, seed: int) -> None:
    """``act/`` (contrast rows as ``data build`` writes them), ``act_inverted/`` (the same, the training
    labels naming the wrong action as the expert's: a mis-wired reward's twin; its held-out split is true),
    ``sft_choice/`` (the format stage: verdicts drawn at random, plus the warm-up: the expert's action on the
    agent prompt) and ``ceiling/sft_choice/`` (the same with the correct verdicts)."""
    from data_tools.pairs import contrast_rows
    from openrlhf_act.devtools.learning_task import task_pairs
    from openrlhf_act.files import write_jsonl
    from openrlhf_act.prompts import action_response, agent_messages, verdict_response
    from openrlhf_act.schema import ContrastPair, decode_judgment_label

    def chat(prompt: list[dict[str, str]], response: str) -> dict:
        return {"prompt": prompt, "response": [{"role": "assistant", "content": response}]}

    rng = random.Random(f"format:{seed}")
    for split, pairs in task_pairs(seed).items():
        warm_up = [chat(agent_messages(p.state), action_response(p.state.expert_action)) for p in pairs]
        rows = contrast_rows(pairs, seed=seed, split=split, both_orders=True)
        write_jsonl(data / "act" / f"{split}.jsonl", rows)
        if split == "train":
            swapped = [
                ContrastPair(replace(p.state, expert_action=p.alternatives[0]), (p.state.expert_action,)) for p in pairs
            ]
            write_jsonl(
                data / "act_inverted" / f"{split}.jsonl",
                contrast_rows(swapped, seed=seed, split=split, both_orders=True),
            )
        else:
            write_jsonl(data / "act_inverted" / f"{split}.jsonl", rows)
        answers = [decode_judgment_label(row["label"]).answer for row in rows]
        for folder, picks in (("sft_choice", [rng.choice((1, 2)) for _ in rows]), ("ceiling/sft_choice", answers)):
            verdicts = [chat(row["prompt"], verdict_response(pick)) for row, pick in zip(rows, picks)]
            write_jsonl(data / folder / f"{split}.jsonl", verdicts + 2 * warm_up)


def build_model(out: Path, seed: int) -> Path:
    from openrlhf_act.devtools.learning_task import task_vocabulary
    from openrlhf_act.devtools.tiny_model import build_tiny_model

    return build_tiny_model(out, hidden_size=WIDTH, num_heads=WIDTH // 64, vocabulary=task_vocabulary(), seed=seed)


def judge(model: Path, data: Path, out: Path) -> dict:
    """Held-out accuracy by ``openrlhf-act eval judgment`` (greedy, vLLM): its ``overall`` summary (percent).
    Run in its own session, so its vLLM engine is stopped by pid whatever happens."""
    from openrlhf_act.devtools.processes import run_logged

    command = [sys.executable, "-m", "openrlhf_act", "eval", "judgment", "--data", str(data / "act" / "eval.jsonl"),
               "--policy", "vllm", "--model", str(model), "--out", str(out), "--no-swap", "--no-progress",
               "--policy-option", "max_tokens=16"]  # fmt: skip
    if run_logged(command, out.with_suffix(".log"), {**os.environ, "HF_HUB_OFFLINE": "1"}) != 0:
        raise RuntimeError(f"eval judgment failed; see {out.with_suffix('.log')}")
    return json.loads((out / "summary.json").read_text())["overall"]


def recipe(name: str, log: Path, env: dict[str, str]) -> None:
    from openrlhf_act.devtools.processes import run_logged

    if run_logged(["bash", str(ROOT / "recipes" / f"{name}.sh")], log, env) != 0:
        raise RuntimeError(f"{name}.sh failed; see {log}")


def training_env() -> dict[str, str]:
    """The environment of every stage: offline, the CPU shim, this interpreter's tools first on PATH."""
    from openrlhf_act.devtools.openrlhf_cpu import cpu_environment

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.update(cpu_environment(env))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    return env


def stage_env(env: dict[str, str], data: Path, save_dir: Path, model: Path, settings: dict[str, str]) -> dict[str, str]:
    common = {"PRESET": "cpu", "DATA_DIR": str(data), "OUTPUT_DIR": str(save_dir.parent), "SAVE_DIR": str(save_dir),
              "MODEL": str(model), "MAX_SAMPLES": "all", "EVAL_STEPS": "-1", "SAVE_STEPS": "-1"}  # fmt: skip
    return {**env, **common, **settings}


def collapse_step(malformed: list[tuple[int, float]]) -> int | None:
    """The first step of a run of COLLAPSE_STEPS steps whose sampled malformed share exceeds COLLAPSE_SHARE."""
    run = 0
    for i, (_, share) in enumerate(malformed):
        run = run + 1 if share > COLLAPSE_SHARE else 0
        if run == COLLAPSE_STEPS:
            return malformed[i - COLLAPSE_STEPS + 1][0]
    return None


def plot(curves: dict[str, dict[str, list[tuple[int, float]]]], png: Path) -> bool:
    """train/accuracy (solid) and train/malformed (dotted) per GRPO step, one colour per run."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    for (name, scalars), colour in zip(curves.items(), ("C0", "C1", "C2", "C3", "C4")):
        for key, style in (("train/accuracy", "-"), ("train/malformed", ":")):
            points = scalars.get(key, [])
            ax.plot([s for s, _ in points], [v for _, v in points], style, color=colour, label=f"{name} {key[6:]}")
    ax.axhline(0.5, color="grey", linewidth=0.8)
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("share of sampled verdicts")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="center right", fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return True


def format_stage(root: Path, seed: int, env: dict[str, str], *, ceiling: bool = False) -> dict:
    """Task data, model, (the supervised ceiling,) the format stage and its held-out accuracy; a Ray head must
    be up, its address in ``env``."""
    data, runs, logs = root / "data", root / "runs", root / "logs"
    write_task(data, seed)
    model = build_model(root / "tiny-model", seed)
    result: dict = {"seed": seed, "root": root}
    if ceiling:
        recipe("sft_choice", logs / "ceiling.log", stage_env(env, data / "ceiling", runs / "ceiling", model, FORMAT))
        result["ceiling"] = judge(runs / "ceiling", data, root / "eval-ceiling")
        print(f"seed {seed}: supervised ceiling {result['ceiling']['accuracy']}%", file=sys.stderr, flush=True)
    start = time.monotonic()  # the ceiling is not part of the pipeline's time
    recipe("sft_choice", logs / "format.log", stage_env(env, data, runs / "format", model, FORMAT))
    result["before"] = judge(runs / "format", data, root / "eval-before")
    result["format_seconds"] = time.monotonic() - start
    return result


def grpo_stage(start: dict, env: dict[str, str], *, act: str = "act", grpo: dict[str, str] | None = None) -> dict:
    """GRPO from the format stage's model on ``data/<act>``; held-out accuracy, the curve, collapse."""
    from openrlhf_act.devtools.tensorboard_logs import read_scalars

    root, seed = start["root"], start["seed"]
    data, runs = root / "data", root / "runs"
    settings = {**GRPO, **(grpo or {}), "SEED": str(seed), "ACT_DATA": str(data / act)}
    began = time.monotonic()
    recipe("act", root / "logs" / f"{act}.log", stage_env(env, data, runs / act, runs / "format", settings))
    result = {**start, "after": judge(runs / act, data, root / f"eval-{act}")}
    result["seconds"] = start["format_seconds"] + time.monotonic() - began
    scalars = read_scalars(runs / act)
    result["curve"] = {key: scalars.get(key, []) for key in ("train/accuracy", "train/malformed")}
    malformed = result["curve"]["train/malformed"]
    result["first_malformed"] = malformed[0][1] if malformed else float("nan")
    result["collapsed_at"] = collapse_step(malformed)
    shares = f"{result['before']['accuracy']}% -> {result['after']['accuracy']}%"
    print(f"seed {seed} ({act}): sampled malformed share before the first GRPO step {result['first_malformed']:.3f}; "
          f"held-out {shares}", file=sys.stderr, flush=True)  # fmt: skip
    return result


def seed_results(r: dict) -> list[BenchResult]:
    seed, before, after = r["seed"], r["before"], r["after"]
    out = []
    if "ceiling" in r:
        out.append(at_least(f"learning seed {seed}: supervised ceiling (held-out)", r["ceiling"]["accuracy"] / 100,
                            TARGET, "", "sft_choice.sh on the correct verdicts"))  # fmt: skip
    value = before["accuracy"] / 100
    name = f"learning seed {seed}: held-out accuracy after the format stage"
    out.append(BenchResult(name, value, "", "~0.5", abs(value - 0.5) <= 0.15, f"malformed {before['malformed']}%"))
    out.append(
        at_most(f"learning seed {seed}: sampled malformed share, first GRPO step", r["first_malformed"], 0.5, "")
    )
    if r["collapsed_at"] is not None:
        note = f"COLLAPSED at step {r['collapsed_at']} (sampled malformed > 50 % for {COLLAPSE_STEPS} steps)"
        out.append(
            BenchResult(f"learning seed {seed}: GRPO run", float(r["collapsed_at"]), "step", "no collapse", False, note)
        )
    accuracy = " ".join(f"{v:.2f}" for _, v in r["curve"]["train/accuracy"])
    out.append(at_least(f"learning seed {seed}: held-out accuracy after GRPO", after["accuracy"] / 100, TARGET, "",
                        f"malformed {after['malformed']}%; train/accuracy per step: {accuracy}"))  # fmt: skip
    bias = abs(after["pred_first"] - after["gold_first"]) / 100
    out.append(at_most(f"learning seed {seed}: |pred_first - gold_first| after GRPO", bias, 0.1, ""))
    out.append(at_most(f"learning seed {seed}: wall time, format + GRPO + evals", r["seconds"], 900, "s"))
    return out


def run(quick: bool) -> list[BenchResult]:
    from openrlhf_act.devtools.local_ray import LocalRayHead

    seeds = [int(s) for s in os.environ.get("BENCH_LEARNING_SEEDS", "0" if quick else "0,1,2").split(",")]
    keep = os.environ.get("BENCH_LEARNING_OUT")
    with tempfile.TemporaryDirectory(prefix="bench-learning-") as tmp:
        root = Path(keep) if keep else Path(tmp)
        env = training_env()
        runs = []
        with LocalRayHead(root / "ray.log", env=env) as head:
            env["RAY_ADDRESS"] = head.address
            for i, seed in enumerate(seeds):
                start = format_stage(root / f"seed-{seed}", seed, env, ceiling=i == 0 and not quick)
                runs.append(grpo_stage(start, env))
        png = (Path(keep) if keep else ROOT / "bench") / "learning_curve.png"
        drawn = plot({f"seed {r['seed']}": r["curve"] for r in runs}, png)
    results = [row for r in runs for row in seed_results(r)]
    passed = sum(r["after"]["accuracy"] / 100 >= TARGET and r["collapsed_at"] is None for r in runs)
    note = f"curve: {png}" if drawn else "no matplotlib: no curve"
    results.append(at_least("learning: seeds reaching the target", passed, len(runs), "seeds", note))
    return results
