"""Layouts that cannot hang and the preflight a stage runs before its OpenRLHF command.

The layout tests drive OpenRLHF's own split and dispatch code (``split_rollout_samples``,
``async_run_method_batch``, ``execute_batch``) with fake actor handles; the faults (a cluster too
small, an uneven layout, fp16, prompts over the limit, too little disk) each stop a stage before any
model loads, naming the setting and a value that works.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from openrlhf_act.recipe_check import check_recipes, split_launch
from openrlhf_act.recipe_check.layout import deal, uneven_steps, working_settings
from openrlhf_act.recipe_check.openrlhf_main import openrlhf_main
from openrlhf_act.recipe_check.resources import Need, _wait_for, ray_address, ray_need
from tests.conftest import have, requires_openrlhf
from tests.test_prompt_budget import write_act_data

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"
CLEAN = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}

pytestmark = requires_openrlhf


def test_openrlhf_deals_the_old_paper_layout_unevenly():
    """The figures of issue 25, from OpenRLHF's own dispatch: GROUP_SIZE 8, micro-batches of 4."""
    assert len(uneven_steps(64, 8, 4, 8)) == 48
    assert len(uneven_steps(64, 8, 4, 16)) == 56
    leftover = deal(43, 8, 4, 8)  # 299 train rows: 43 groups in the last step
    assert leftover.micro_batches == (11,) * 7 + (9,) and not leftover.even
    assert "Insufficient batch size" in deal(1, 8, 4, 8).error
    assert deal(64, 8, 4, 8).even  # a full step is fine: only the last one varies


def test_micro_batches_of_one_deal_evenly_on_8_ranks_and_16_need_a_larger_group():
    assert uneven_steps(64, 8, 1, 8) == []
    assert all(deal(g, 8, 1, 8).micro_batches == (g,) * 8 for g in (1, 5, 64))
    assert working_settings(64, 8, 8) == "MICRO_ROLLOUT_BATCH=1"
    assert working_settings(64, 8, 16) == "GROUP_SIZE=16 MICRO_ROLLOUT_BATCH=1"
    assert uneven_steps(64, 16, 1, 16) == []
    # ring attention / tensor parallel: two handles share each chunk, so 16 GPUs are 8 effective ranks
    assert uneven_steps(64, 8, 1, 16, duplicate=2) == []


def _errors(report, needle: str) -> list[str]:
    return [f.message for f in report.errors if needle in f.message]


def test_every_grpo_recipe_deals_evenly_on_one_node_and_refuses_two():
    """Over every GRPO recipe's DRY_RUN expansion: the paper and small presets on 1x8 pass; on 2x8 each
    is refused with the settings that would work (GROUP_SIZE 8 cannot fill 16 ranks)."""
    grpo = [RECIPES / name for name in ("act.sh", "rl.sh", "mixed.sh", "online_env.sh")]
    env = {**CLEAN, "MODE": "local", "ACT_SWAP_CONSISTENCY": "0", "ACT_REASONING": "free"}
    one = check_recipes(grpo, presets=["paper", "small"], cluster=(1, 8), environ=env)
    assert one.errors == [] and one.commands == 8
    two = check_recipes(grpo, presets=["paper", "small"], cluster=(2, 8), environ=env)
    refused = {f.variant.split(" ")[0]: f.message for f in two.errors if "deal unevenly" in f.message}
    assert set(refused) == {"PRESET=paper", "PRESET=small"}
    assert "32 of 64 possible last-step sizes" in refused["PRESET=paper"]
    assert "8 of 16 possible last-step sizes" in refused["PRESET=small"]
    assert all("over the 16 actor and reference ranks" in m and "set GROUP_SIZE=16 MICRO_ROLLOUT_BATCH=1" in m
               for m in refused.values())  # fmt: skip


def test_fp16_is_refused_in_grpo_stages_only():
    env = {**CLEAN, "PARAM_DTYPE": "fp16", "MODE": "local"}
    act = check_recipes([RECIPES / "act.sh"], presets=["small"], environ=env)
    assert any("set PARAM_DTYPE=bf16" in m for m in _errors(act, "--ds.param_dtype fp16"))
    il = check_recipes([RECIPES / "il.sh"], presets=["small"], environ=env)
    assert _errors(il, "param_dtype") == []


def _command(recipe: str, tmp_path: Path, **env: str) -> list[str]:
    """The OpenRLHF command a recipe prints under DRY_RUN=1."""
    environ = {**CLEAN, "DATA_DIR": str(tmp_path / "data"), "OUTPUT_DIR": str(tmp_path / "runs"), **env}
    environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environ['PATH']}"
    out = subprocess.run(
        ["bash", str(RECIPES / recipe)], env={**environ, "DRY_RUN": "1"}, capture_output=True, text=True, check=True
    )
    (line,) = [line for line in out.stdout.splitlines() if "openrlhf.cli." in line]
    return shlex.split(line)


def _preflight(argv: list[str], recipe: str, **kwargs) -> list[str]:
    from openrlhf_act.recipe_check.preflight import preflight

    return [f.message for f in preflight(argv, RECIPES / recipe, **kwargs) if f.level == "error"]


def test_the_preflight_refuses_prompts_over_the_limit_from_the_manifest(tmp_path, tiny_model, monkeypatch):
    from openrlhf_act.recipe_check import preflight

    monkeypatch.setattr(preflight, "check_ray_cluster", lambda need, wait_s: None)  # its own test below
    argv = _command("act.sh", tmp_path, PRESET="cpu", MODEL=tiny_model)
    write_act_data(tmp_path / "data", content_chars=300, manifest_max=1000)
    assert _preflight(argv, "act.sh") == []
    write_act_data(tmp_path / "data", content_chars=300, manifest_max=2000)  # PRESET=cpu: PROMPT_MAX_LEN 1536
    train, evaluation = _preflight(argv, "act.sh")
    assert train.startswith(str(tmp_path / "data" / "act" / "train.jsonl")) and "eval.jsonl" in evaluation
    assert "prompts up to 2000 tokens" in train and "set PROMPT_MAX_LEN=2000" in train


def test_the_preflight_refuses_too_little_disk(tmp_path, tiny_model, monkeypatch):
    from safetensors import safe_open

    from openrlhf_act.recipe_check import preflight

    params = preflight.model_parameters(tiny_model)
    with safe_open(str(Path(tiny_model) / "model.safetensors"), framework="np") as weights:
        names = weights.keys()  # safe_open is not iterable
        assert params == sum(math.prod(weights.get_slice(name).get_shape()) for name in names)
    argv = _command("il.sh", tmp_path, PRESET="cpu", MODEL=tiny_model)
    (tmp_path / "data" / "sft").mkdir(parents=True)
    row = {"prompt": [{"role": "user", "content": "go"}], "response": [{"role": "assistant", "content": "look"}]}
    for split in ("train", "eval"):
        (tmp_path / "data" / "sft" / f"{split}.jsonl").write_text(json.dumps(row) + "\n")
    assert [m for m in _preflight(argv, "il.sh") if "disk" in m or "GB" in m] == []
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: SimpleNamespace(free=1000))
    (message,) = [m for m in _preflight(argv, "il.sh") if "GB free" in m]
    assert "KEEP_CHECKPOINTS=1" in message and "SAVE_STEPS=-1" in message and f"{params / 1e9:.2f} B" in message


def test_a_cluster_too_small_or_busy_stops_within_the_bound():
    need = Need(gpus=8, cpus=9, roles="actor, reference and vLLM engines (colocated) 8")
    small = {"GPU": 1.0, "CPU": 16.0}
    problem = _wait_for(need, "h:1", lambda: small, lambda: small, wait_s=60, poll_s=0.01)
    assert "has 1 GPU(s)" in problem and "asks for 8 GPU(s)" in problem and "GPUS_PER_NODE" in problem
    full = {"GPU": 8.0, "CPU": 16.0}
    busy = {"GPU": 3.0, "CPU": 16.0}
    problem = _wait_for(need, "h:1", lambda: full, lambda: busy, wait_s=0.05, poll_s=0.01)
    assert "RESOURCE_WAIT_S=0.05" in problem and "only 3 GPU(s) free" in problem
    frees = iter([busy, busy, full])
    assert _wait_for(need, "h:1", lambda: full, lambda: next(frees), wait_s=60, poll_s=0.01) is None


def test_the_stage_asks_ray_for_what_train_ppo_ray_places(tmp_path):
    def need(**env: str) -> Need:
        launch = split_launch(_command("act.sh", tmp_path, **env))
        return ray_need(openrlhf_main(launch.module).run(launch.args).args)

    assert (need(PRESET="paper").gpus, need(PRESET="paper").cpus) == (8, 9)  # colocated: one bundle per GPU
    cpu = need(PRESET="cpu", MODEL=str(tmp_path))
    assert (cpu.gpus, cpu.cpus) == (3, 4)  # actor + reference + vLLM engine, as ensure_ray_head offers
    assert need(PRESET="paper", COLOCATE="0").gpus == 24


def test_the_driver_s_cluster_is_resolved_as_ray_init_resolves_it(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.1.2.3:6399")
    assert ray_address() == "10.1.2.3:6399"


@pytest.mark.slow
@pytest.mark.skipif(not have("ray"), reason="ray is not installed")
def test_a_real_head_of_the_wrong_size_stops_the_stage(tmp_path, tiny_model):
    from openrlhf_act.devtools.local_ray import LocalRayHead

    argv = _command("act.sh", tmp_path, PRESET="cpu", MODEL=tiny_model)
    write_act_data(tmp_path / "data", content_chars=300)
    head = LocalRayHead(tmp_path / "ray.log", num_gpus=1, num_cpus=1)
    head.start(timeout=300)  # a busy 2-core machine starts Ray slowly
    try:
        env = {**os.environ, "RAY_ADDRESS": head.address}
        done = subprocess.run(
            [sys.executable, "-m", "openrlhf_act", "recipe", "preflight", "--recipe", str(RECIPES / "act.sh"),
             "--wait", "1", "--", *argv],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        head.stop()
    assert done.returncode == 2, done.stderr
    assert "has 1 GPU(s) and 1 CPU(s), this stage asks for 3 GPU(s) and 4 CPU(s)" in done.stderr


FAKE_DRIVER = """#!/bin/sh
# Stands in for `python3 -m openrlhf.cli.train_ppo_ray`: records the cluster it was given, then fails or waits.
printf '%s\\n' "$RAY_ADDRESS" > "$RECORD"
cat "$HEAD_STATE" >> "$RECORD"
[ "$DRIVER" = wait ] && exec sleep 120
exit 3
"""


def _run_stage(tmp_path: Path, tiny_model: str, driver: str) -> tuple[subprocess.Popen, dict[str, str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "python3").write_text(FAKE_DRIVER)
    (bin_dir / "python3").chmod(0o755)
    write_act_data(tmp_path / "data", content_chars=300)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}", PRESET="cpu", MODEL=tiny_model,
        DATA_DIR=str(tmp_path / "data"), OUTPUT_DIR=str(tmp_path / "runs"), PYTHON=str(bin_dir / "python3"),
        RECORD=str(tmp_path / "record"), HEAD_STATE=str(tmp_path / "runs" / "act.ray-head.json"), DRIVER=driver,
        RESOURCE_WAIT_S="300",
    )  # fmt: skip
    stage = subprocess.Popen(
        ["bash", str(RECIPES / "act.sh")], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    return stage, env


@pytest.mark.slow
@pytest.mark.skipif(not have("ray"), reason="ray is not installed")
def test_a_stage_runs_on_its_own_head_beside_another_cluster_and_stops_it(tmp_path, tiny_model):
    """Another Ray cluster on the machine (too small for the stage) is left alone: the stage starts its
    private head, its driver is pointed at it, and the head is stopped by pid when the driver fails and
    when the stage is interrupted (Ctrl-C)."""
    import signal
    import time

    from openrlhf_act.devtools.local_ray import LocalRayHead
    from openrlhf_act.devtools.processes import alive, session_pids

    ray = str(Path(sys.executable).parent / "ray")
    foreign = LocalRayHead(tmp_path / "foreign.log", num_gpus=1, num_cpus=1)
    foreign.start(timeout=300)  # a busy 2-core machine starts Ray slowly
    try:
        for driver in ("fail", "wait"):
            stage, env = _run_stage(tmp_path, tiny_model, driver)
            if driver == "wait":
                deadline = time.monotonic() + 300
                while not Path(env["RECORD"]).is_file() and stage.poll() is None and time.monotonic() < deadline:
                    time.sleep(1)
                time.sleep(1)
                os.killpg(stage.pid, signal.SIGINT)
            output = stage.communicate(timeout=300)[0]
            address, state = Path(env["RECORD"]).read_text().split("\n", 1)
            head = json.loads(state)
            assert stage.returncode == (3 if driver == "fail" else 130), output
            assert address == head["address"] != foreign.address, output
            assert not [pid for pid in session_pids(head["pid"], head["temp_dir"]) if alive(pid)], output
            assert not Path(env["HEAD_STATE"]).exists()
            Path(env["RECORD"]).unlink()
        status = subprocess.run([ray, "status", f"--address={foreign.address}"], capture_output=True, text=True)
        assert status.returncode == 0 and "1.0 GPU" in status.stdout, status.stdout + status.stderr
    finally:
        foreign.stop()


def test_a_stale_ray_address_stops_at_once(monkeypatch):
    """ray.init retries an address where nothing listens without end: the preflight names it instead."""
    from openrlhf_act.devtools.local_ray import free_port
    from openrlhf_act.recipe_check.resources import check_ray_cluster

    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{free_port()}")
    problem = check_ray_cluster(Need(1, 2, "actor 1"), wait_s=300)
    assert problem.startswith("nothing answers at the Ray cluster address") and "unset RAY_ADDRESS" in problem


def test_a_deepspeed_stage_stops_in_its_preflight_before_the_launcher_runs(tmp_path, tiny_model):
    """Through the recipe: prompts over SFT_MAX_LEN stop il.sh before `deepspeed` starts; fitting ones pass."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "deepspeed").write_text(f"#!/bin/sh\necho ran >> {tmp_path / 'launched'}\n")
    (bin_dir / "deepspeed").chmod(0o755)
    env = {**CLEAN, "PRESET": "cpu", "MODEL": tiny_model, "DATA_DIR": str(tmp_path / "data")}
    env.update(
        OUTPUT_DIR=str(tmp_path / "runs"), PATH=f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}:/usr/bin:/bin"
    )
    sft = tmp_path / "data" / "sft"
    sft.mkdir(parents=True)

    def run(prompt_chars: int) -> subprocess.CompletedProcess:
        row = {"prompt": [{"role": "user", "content": "x" * prompt_chars}], "response": "look"}
        for split in ("train", "eval"):
            (sft / f"{split}.jsonl").write_text(json.dumps(row) + "\n")
        return subprocess.run(["bash", str(RECIPES / "il.sh")], env=env, capture_output=True, text=True, timeout=300)

    done = run(9000)  # about 3000 tokens by the estimate; PRESET=cpu: SFT_MAX_LEN 1600
    assert done.returncode == 2 and not (tmp_path / "launched").exists(), done.stderr
    assert "exceed the recipe's prompt limit 1600" in done.stderr and "SFT_MAX_LEN well above" in done.stderr
    assert "the preflight stopped this stage before anything started" in done.stderr
    done = run(300)
    assert done.returncode == 0 and (tmp_path / "launched").read_text() == "ran\n", done.stderr
    assert "preflight: 0 warning(s), no error" in done.stderr
