"""The whole ACT pipeline on this machine, no GPU needed: a tiny model built offline, ACT data from
ScienceWorld's gold trajectories, a private loopback Ray head with fake GPU resources, STAGES=act,il,rl
through OpenRLHF's own trainers (recipes/pipeline.sh with PRESET=cpu), then `openrlhf-act eval episodes`
on the final checkpoint. A rerun skips what is done and resumes the interrupted stage. It refuses on a machine
with a GPU, where its CPU-only settings would hide the GPU: there, run the recipes (docs/gpu.md).
Example: openrlhf-act demo --out out/demo"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HELP = "run data -> ACT -> IL -> RL -> eval end to end on this machine (CPU, tiny model)"
CPU_PROMPT_MAX_LEN = "1536"  # PRESET=cpu's PROMPT_MAX_LEN (recipes/common.sh): no prompt may be longer


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="out/demo", help="where everything goes (default out/demo; reruns resume)")
    parser.add_argument("--stages", default="act,il,rl", help="pipeline stages (default act,il,rl)")
    parser.add_argument(
        "--tasks",
        default="find-plant,find-living-thing,lifespan-longest-lived,test-conductivity",
        help="ScienceWorld tasks for the data (fast ones by default)",
    )
    parser.add_argument("--eval-tasks", default="find-plant", help="ScienceWorld tasks played by the final model")
    parser.add_argument("--eval-max-steps", type=int, default=5, help="step limit of each evaluation episode")
    parser.set_defaults(func=run)


class _Reporter:
    """One line per step, with its log, so a failure or Ctrl-C names the step that was running."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.current = ""
        self.start = time.monotonic()
        self.step_start = self.start
        self.timings: dict[str, float] = {}

    def begin(self, step: str, what: str) -> Path:
        self.end()
        self.current = step
        self.step_start = time.monotonic()
        log = self.logs / f"{step}.log"
        print(f"[{self.step_start - self.start:6.0f} s] {step}: {what} (log: {log})", flush=True)
        return log

    def end(self) -> None:
        """Close the current step and keep its wall time (``timings.json``, read by bench/bench_training.py)."""
        from openrlhf_act.files import write_text

        if self.current:
            self.timings[self.current] = round(time.monotonic() - self.step_start, 1)
            self.current = ""
            write_text(self.logs.parent / "timings.json", json.dumps(self.timings, indent=1))


def run(args: argparse.Namespace) -> int:
    from openrlhf_act.errors import UsageError

    gpu = _gpu_found()
    if gpu:
        raise UsageError(
            f"the demo is for a machine without a GPU ({gpu}): it forces DS_ACCELERATOR=cpu, a flash_attn "
            "stand-in and a Ray head with fake GPUs. On a GPU machine run the recipes instead, e.g. "
            "PRESET=small STAGES=act,il,rl bash recipes/pipeline.sh (see docs/gpu.md)"
        )
    missing = [m for m in ("openrlhf", "vllm", "deepspeed", "ray", "scienceworld") if not _installed(m)]
    if missing:
        raise UsageError(
            f"the demo runs OpenRLHF's trainers and ScienceWorld; missing: {', '.join(missing)}. "
            "Install the CPU stack with: bash scripts/setup_cpu.sh"
        )
    if shutil.which("java") is None:
        raise UsageError("ScienceWorld needs Java 17 (apt-get install openjdk-17-jre-headless)")
    out = Path(args.out).resolve()
    reporter = _Reporter(out / "logs")
    try:
        return _run(args, out, reporter)
    except KeyboardInterrupt:
        print(
            f"openrlhf-act demo: interrupted during '{reporter.current}' "
            f"(log: {reporter.logs}/{reporter.current}.log); every process it started was stopped; "
            "finished steps are kept, rerun to resume",
            file=sys.stderr,
        )
        return 130


def _run(args: argparse.Namespace, out: Path, reporter: _Reporter) -> int:
    from openrlhf_act.devtools.local_ray import LocalRayHead, RayHeadError
    from openrlhf_act.devtools.openrlhf_cpu import cpu_environment
    from openrlhf_act.devtools.processes import run_logged
    from openrlhf_act.errors import UsageError
    from openrlhf_act.recipe_check import default_recipes_dir

    recipes = default_recipes_dir()
    if recipes is None:
        raise UsageError("no recipes/ folder found (run from a checkout, or install the package with its recipes)")
    cli = [sys.executable, "-m", "openrlhf_act"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    data, runs = out / "data", out / "runs"
    stages = args.stages.split(",")

    def step(name: str, what: str, command: list[str], step_env: dict[str, str] | None = None) -> None:
        log = reporter.begin(name, what)
        status = run_logged(command, log, step_env or env)
        if status != 0:
            raise UsageError(f"step '{name}' failed (exit status {status}); see its log: {log}")

    model = out / "tiny-model"
    step("model", "a tiny Qwen2 model and tokenizer, built offline",
         [sys.executable, "-m", "openrlhf_act.devtools.tiny_model", str(model)])  # fmt: skip

    if not (data / "act" / "manifest.json").is_file():
        build = [*cli, "data", "build", "--out", str(data / "act"), "--tasks", args.tasks]
        fit = ["--max-prompt-tokens", CPU_PROMPT_MAX_LEN, "--tokenizer", str(model)]
        step("data", "ScienceWorld gold trajectories -> ACT contrast prompts", [*build, *fit])
    for kind in ("sft", "next_action", "dpo", "sft_choice"):
        if not (data / kind / "manifest.json").is_file():
            export = [*cli, "data", "export", "--kind", kind, "--build", str(data / "act"), "--out", str(data / kind)]
            step(f"export-{kind}", f"{kind} rows from the same build and split", export)

    cpu_env = {**env, **cpu_environment(env)}
    ray_log = reporter.begin("ray", "a private loopback Ray head with 3 fake GPUs")
    pipeline_dir = runs / "-".join(stages)
    try:
        with LocalRayHead(ray_log, env=cpu_env) as head:
            pipeline_env = {
                **cpu_env, "RAY_ADDRESS": head.address, "PRESET": "cpu", "STAGES": ",".join(stages),
                "MODEL": str(model), "DATA_DIR": str(data), "OUTPUT_DIR": str(runs), "PIPELINE_DIR": str(pipeline_dir),
                "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
            }  # fmt: skip
            step(
                "pipeline",
                f"STAGES={','.join(stages)} through OpenRLHF's trainers (PRESET=cpu)",
                ["bash", str(recipes / "pipeline.sh")],
                pipeline_env,
            )
    except RayHeadError as exc:
        raise UsageError(str(exc)) from None

    final = pipeline_dir / f"{len(stages)}-{stages[-1]}"
    step(
        "eval",
        f"ScienceWorld episodes played by the final checkpoint ({args.eval_tasks})",
        [*cli, "eval", "episodes", "--env", "scienceworld", "--policy", "vllm", "--model", str(final),
         "--tasks", args.eval_tasks, "--split", "test", "--episodes", "1", "--max-steps", str(args.eval_max_steps),
         "--workers", "1", "--out", str(out / "eval"), "--no-progress",
         "--policy-option", "max_tokens=32"],
    )  # fmt: skip
    reporter.end()
    _print_summary(out, pipeline_dir, stages)
    return 0


def _print_summary(out: Path, pipeline_dir: Path, stages: list[str]) -> None:
    print("\ndone. Where everything is:")
    print(f"  data:          {out / 'data'} (act/, sft/, next_action/, ... each with manifest.json)")
    for i, stage in enumerate(stages, start=1):
        folder = pipeline_dir / f"{i}-{stage}"
        print(f"  stage {i} {stage:<5} log: {folder}.log")
        print(f"                checkpoint: {folder}")
        metrics = sorted(folder.glob("tensorboard/*")) or [folder / "tensorboard"]
        print(f"                metrics: {metrics[0]} (tensorboard --logdir {folder / 'tensorboard'})")
    print(f"  evaluation:    {out / 'eval'} (summary.json, episodes.jsonl)")
    print(f"  logs:          {out / 'logs'}")


def _gpu_found() -> str:
    """What shows a GPU here ('' for none): ``nvidia-smi -L`` listing one, or torch seeing CUDA."""
    if shutil.which("nvidia-smi"):
        try:
            listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            listed = ""
        if any(line.startswith("GPU ") for line in listed.splitlines()):
            return "nvidia-smi lists a GPU"
    if _installed("torch"):
        import torch

        if torch.cuda.is_available():
            return "torch.cuda.is_available() is True"
    return ""


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
