"""Learning check: does OpenRLHF's real GRPO loop with our act_judgment reward teach a tiny model to judge?

A synthetic judgment task a tiny model can learn: the observation names an object, the expert action uses it,
the alternative uses another object; the candidates come in a balanced random order, rendered by our own
judgment prompt and labelled by our own label schema. A random model never emits a verdict, so the format is
taught first by the SFT-on-choice recipe on verdicts drawn *at random* (it learns the format, not the task:
accuracy stays near 0.5), for 6 epochs: after 2, greedy verdicts were well formed but 94.5% of the samples
drawn at temperature 1.0 were not. Then recipes/act.sh (PRESET=cpu, train_ppo_ray, GRPO, rollouts at
temperature 0.7) trains with our reward.
Held-out judgment accuracy (``openrlhf-act eval judgment``) is measured after the format stage and after
GRPO; target: from about 0.5 to >= 0.8, with ``pred_first`` within 0.1 of ``gold_first``. The curve
(OpenRLHF's own ``train/accuracy`` per GRPO step) is written as a PNG next to the results.

    python bench/run.py --only learning            (BENCH_LEARNING_OUT=DIR keeps the run and the PNG)
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import BenchResult, at_least, at_most

ROOT = Path(__file__).resolve().parents[1]
OBJECTS = ("apple", "key", "lamp", "book", "cup", "coin", "shoe", "box", "pen", "hat", "egg", "ball")


def write_task(data: Path, train: int, evaluation: int, seed: int = 0) -> None:
    """act/{train,eval}.jsonl (contrast prompts) and sft_choice/{train,eval}.jsonl (random verdicts)."""
    from openrlhf_act.prompts import judgment_messages, verdict_response
    from openrlhf_act.schema import JudgmentLabel, State, encode_label

    rng = random.Random(seed)
    for split, count in (("train", train), ("eval", evaluation)):
        act_rows, format_rows = [], []
        answers = [1, 2] * (count // 2) + [1] * (count % 2)
        rng.shuffle(answers)
        for i, answer in enumerate(answers):
            target, other = rng.sample(OBJECTS, 2)
            expert, alternative = f"take {target}", f"take {other}"
            candidates = (expert, alternative) if answer == 1 else (alternative, expert)
            task_id = f"synthetic-{split}/{i}"
            state = State(task_id, "synthetic", "Take the object you see.", (), f"You see a {target}.", expert, 0)
            messages = judgment_messages(state, candidates)
            label = JudgmentLabel(answer, candidates, expert, f"{task_id}#0", task_id, "synthetic", 0)
            act_rows.append({"prompt": messages, "label": encode_label(label), "datasource": "synthetic"})
            verdict = verdict_response(rng.choice((1, 2)))
            format_rows.append({"prompt": messages, "response": [{"role": "assistant", "content": verdict}]})
        for kind, rows in (("act", act_rows), ("sft_choice", format_rows)):
            (data / kind).mkdir(parents=True, exist_ok=True)
            (data / kind / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _judge(model: Path, data: Path, out: Path) -> dict:
    subprocess.run(
        [sys.executable, "-m", "openrlhf_act", "eval", "judgment", "--data", str(data / "act" / "eval.jsonl"),
         "--policy", "vllm", "--model", str(model), "--out", str(out), "--no-swap", "--no-progress",
         "--policy-option", "max_tokens=16"],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return json.loads((out / "summary.json").read_text())["overall"]


def _curve(run_dir: Path, png: Path) -> list[tuple[int, float]]:
    from openrlhf_act.devtools.tensorboard_logs import read_scalars

    points = read_scalars(run_dir).get("train/accuracy", [])
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return points
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([s for s, _ in points], [v for _, v in points], marker="o", label="train/accuracy (OpenRLHF log)")
    ax.axhline(0.5, color="grey", linestyle=":", label="chance")
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("judgment accuracy")
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return points


def run(quick: bool) -> list[BenchResult]:
    from openrlhf_act.devtools.local_ray import LocalRayHead
    from openrlhf_act.devtools.openrlhf_cpu import cpu_environment
    from openrlhf_act.devtools.processes import run_logged
    from openrlhf_act.devtools.tiny_model import build_tiny_model

    keep = os.environ.get("BENCH_LEARNING_OUT")
    with tempfile.TemporaryDirectory(prefix="bench-learning-") as tmp:
        root = Path(keep) if keep else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        data, runs, logs = root / "data", root / "runs", root / "logs"
        write_task(data, train=128 if quick else 512, evaluation=64 if quick else 128)
        model = build_tiny_model(root / "tiny-model")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        env.update(cpu_environment(env))
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
        common = {
            "PRESET": "cpu",
            "DATA_DIR": str(data),
            "OUTPUT_DIR": str(runs),
            "MAX_SAMPLES": "all",
            "EVAL_STEPS": "-1",
        }
        with LocalRayHead(logs / "ray.log", env=env) as head:
            env["RAY_ADDRESS"] = head.address
            fmt = {**env, **common, "MODEL": str(model), "SFT_BATCH": "16", "SFT_MICRO_BATCH": "16",
                   "SFT_MAX_LEN": "512", "SFT_CHOICE_LR": "1e-3", "EPOCHS": "6", "SAVE_STEPS": "-1"}  # fmt: skip
            if run_logged(["bash", str(ROOT / "recipes" / "sft_choice.sh")], logs / "format.log", fmt) != 0:
                raise RuntimeError(f"the format stage failed; see {logs / 'format.log'}")
            before = _judge(runs / "sft_choice", data, root / "eval-before")
            grpo = {**env, **common, "MODEL": str(runs / "sft_choice"), "ACT_LR": "2e-5", "GROUP_SIZE": "8",
                    "ROLLOUT_BATCH": "16", "TRAIN_BATCH": "32", "MICRO_ROLLOUT_BATCH": "32", "MICRO_TRAIN_BATCH": "16",
                    "PROMPT_MAX_LEN": "448", "GENERATE_MAX_LEN": "16", "KL_COEF": "0", "EPOCHS": "1" if quick else "2",
                    "SAVE_STEPS": "-1", "TEMPERATURE": "0.7"}  # fmt: skip
            if run_logged(["bash", str(ROOT / "recipes" / "act.sh")], logs / "grpo.log", grpo) != 0:
                raise RuntimeError(f"the GRPO stage failed; see {logs / 'grpo.log'}")
        after = _judge(runs / "act", data, root / "eval-after")
        png = root / "learning_curve.png"
        points = _curve(runs / "act", png)
        if keep is None and png.exists():  # keep the picture where bench results go
            png = Path(png.replace(ROOT / "bench" / "learning_curve.png"))
        bias = abs(after["pred_first"] - after["gold_first"]) / 100
        curve = " ".join(f"{v:.2f}" for _, v in points)
        return [
            BenchResult(
                "learning: held-out judgment accuracy after the format stage",
                before["accuracy"] / 100,
                "",
                "~0.5",
                abs(before["accuracy"] / 100 - 0.5) <= 0.15,
                f"malformed {before['malformed']}%",
            ),
            at_least(
                "learning: held-out judgment accuracy after GRPO",
                after["accuracy"] / 100,
                0.8,
                "",
                f"malformed {after['malformed']}%; train/accuracy per step: {curve}; curve: {png}",
            ),
            at_most("learning: |pred_first - gold_first| after GRPO", bias, 0.1, ""),
        ]
