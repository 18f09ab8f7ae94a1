"""What the recipes do so a GPU run does not fail late or fill the disk: checkpoints bounded and beside the
model folder, no unrotated Hugging Face copies, a free DeepSpeed launcher port, a wandb key required and
never printed, no pip shipping of an unpublished package; and the CPU demo refusing on a GPU machine.
Run mode is driven with stand-ins for ``deepspeed`` and ``ray`` that record what they were given."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from openrlhf_act.recipe_check import parse_dry_run, split_launch

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
SECRET = "wandb-secret-1234567890"


def recipe_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No developer exports, this environment's openrlhf-act, stand-in launchers first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("deepspeed", "ray"):
        stand_in = bin_dir / name
        # One line per call: the argv (shell-quoted) and the key the launcher received in its environment.
        calls = tmp_path / f"{name}.calls"
        stand_in.write_text(f'#!/bin/bash\nprintf "%q " "$@" >>{calls}\necho "key=${{WANDB_API_KEY:-}}" >>{calls}\n')
        stand_in.chmod(0o755)
    rows = {
        "sft": {"prompt": [{"role": "user", "content": "Task: look."}], "response": "look"},
        "dpo": {"prompt": [{"role": "user", "content": "Task: look."}], "chosen": "look", "rejected": "wait"},
    }
    for kind, row in rows.items():  # the data the preflight opens before a stage may start
        (tmp_path / "data" / kind).mkdir(parents=True, exist_ok=True)
        for split in ("train", "eval"):
            (tmp_path / "data" / kind / f"{split}.jsonl").write_text(json.dumps(row) + "\n")
    env = {k: os.environ[k] for k in ("HOME", "LANG", "TMPDIR") if k in os.environ}
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]])
    env.update(PATH=path, DATA_DIR=str(tmp_path / "data"), OUTPUT_DIR=str(tmp_path / "runs"), **extra)
    return env


def run_recipe(recipe: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(RECIPES / recipe)], env=env, capture_output=True, text=True, timeout=120)


def calls(tmp_path: Path, name: str) -> list[tuple[list[str], str]]:
    """(argv, WANDB_API_KEY in its environment) of each call of the stand-in ``name``."""
    lines = (tmp_path / f"{name}.calls").read_text().splitlines()
    return [(shlex.split(argv), key) for argv, key in (line.rsplit(" key=", 1) for line in lines)]


def launches(stdout: str):
    return [launch for command in parse_dry_run(stdout)[0] if (launch := split_launch(command.argv))]


def test_checkpoints_are_bounded_beside_the_model_and_never_hf_copies(tmp_path):
    """Every stage of the full pipeline and each preset: --ckpt.path is $SAVE_DIR.ckpt, --ckpt.max_num follows
    KEEP_CHECKPOINTS, no --ckpt.save_hf; GRPO stages keep no best checkpoint unless asked."""
    stages = "act,il,rl,dpo,sft_choice"
    for preset in ("paper", "small", "cpu"):
        env = recipe_env(tmp_path, DRY_RUN="1", PRESET=preset, STAGES=stages, KEEP_CHECKPOINTS="3")
        done = run_recipe("pipeline.sh", env)
        assert done.returncode == 0, done.stderr
        found = launches(done.stdout)
        assert len(found) == len(stages.split(","))
        for launch in found:
            args = launch.args
            model_dir = args[args.index("--ckpt.output_dir") + 1]
            assert args[args.index("--ckpt.path") + 1] == model_dir + ".ckpt"
            assert args[args.index("--ckpt.max_num") + 1] == "3"
            assert "--ckpt.save_hf" not in args
            if launch.module == "openrlhf.cli.train_ppo_ray":
                assert args[args.index("--ckpt.best_metric_key") + 1] == "none"
    env = recipe_env(tmp_path, DRY_RUN="1", BEST_CHECKPOINT="auto")
    (launch,) = launches(run_recipe("act.sh", env).stdout)
    assert "--ckpt.best_metric_key" not in launch.args  # OpenRLHF's own default: the first eval_*_pass1
    done = run_recipe("act.sh", recipe_env(tmp_path, DRY_RUN="1", KEEP_CHECKPOINTS="0"))
    assert done.returncode == 2 and "KEEP_CHECKPOINTS must be at least 1" in done.stderr


def test_deepspeed_stages_get_a_free_master_port(tmp_path):
    dry = run_recipe("il.sh", recipe_env(tmp_path, DRY_RUN="1"))
    assert "deepspeed --num_gpus 8 --master_port FREE_PORT --module" in dry.stdout
    assert "# --master_port FREE_PORT: a free port is picked at launch" in dry.stdout
    env = recipe_env(tmp_path, PRESET="small")
    ports = []
    for _ in range(2):
        done = run_recipe("il.sh", env)
        assert done.returncode == 0, done.stderr
    for argv, _ in calls(tmp_path, "deepspeed"):
        ports.append(int(argv[argv.index("--master_port") + 1]))
    assert len(ports) == 2 and 29500 not in ports
    for port in ports:  # picked free: binding it still works
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))
    (tmp_path / "deepspeed.calls").unlink()
    done = run_recipe("dpo.sh", recipe_env(tmp_path, PRESET="small", DS_MASTER_PORT="29612"))
    assert done.returncode == 0, done.stderr
    assert "--master_port 29612 --module openrlhf.cli.train_dpo" in (tmp_path / "deepspeed.calls").read_text()
    for bad in ("0", "65536", "29500x"):
        done = run_recipe("il.sh", recipe_env(tmp_path, DRY_RUN="1", DS_MASTER_PORT=bad))
        assert (
            done.returncode == 2 and f"DS_MASTER_PORT must be auto or a port number 1-65535, got '{bad}'" in done.stderr
        )


def test_wandb_needs_a_key_in_the_environment(tmp_path):
    done = run_recipe("il.sh", recipe_env(tmp_path, PRESET="small", LOGGER="wandb"))
    assert done.returncode == 2
    assert "LOGGER=wandb needs WANDB_API_KEY in the environment" in done.stderr
    assert not (tmp_path / "deepspeed.calls").exists()


def test_the_wandb_key_reaches_the_job_but_never_the_printed_command(tmp_path):
    env = recipe_env(tmp_path, PRESET="small", LOGGER="wandb", WANDB_API_KEY=SECRET, MODE="job")
    done = run_recipe("il.sh", env)
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stdout + done.stderr
    assert '"WANDB_API_KEY": "<hidden>"' in done.stderr  # the printed command shows where the key goes
    ((argv, _),) = calls(tmp_path, "ray")
    runtime_env = json.loads(argv[argv.index("--runtime-env-json") + 1])
    assert runtime_env["env_vars"]["WANDB_API_KEY"] == SECRET  # what Ray receives carries the real key


def test_job_ship_pip_is_refused_with_what_works(tmp_path):
    done = run_recipe("act.sh", recipe_env(tmp_path, DRY_RUN="1", MODE="job", JOB_SHIP="pip"))
    assert done.returncode == 2
    assert "openrlhf-act is not published on PyPI" in done.stderr and "JOB_SHIP=py_modules" in done.stderr


def demo_args(tmp_path: Path) -> argparse.Namespace:
    return argparse.Namespace(out=str(tmp_path / "demo"), stages="act", tasks="find-plant", eval_tasks="find-plant")


def test_the_demo_refuses_on_a_gpu_machine(tmp_path, monkeypatch):
    from openrlhf_act.commands import demo
    from openrlhf_act.errors import UsageError

    monkeypatch.setattr(demo, "_gpu_found", lambda: "nvidia-smi lists a GPU")
    with pytest.raises(UsageError, match=r"the demo is for a machine without a GPU \(nvidia-smi lists a GPU\)"):
        demo.run(demo_args(tmp_path))
    assert not (tmp_path / "demo").exists()


def test_the_demo_sees_a_gpu_that_nvidia_smi_lists(tmp_path, monkeypatch):
    from openrlhf_act.commands import demo

    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert demo._gpu_found() == "nvidia-smi lists a GPU"
    fake.write_text(
        "#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the driver' >&2\nexit 9\n"
    )
    assert demo._gpu_found() == ""  # this machine's torch is a CPU build
