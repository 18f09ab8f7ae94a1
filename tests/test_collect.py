"""Real ScienceWorld collection (JVMs, offline): gold paths, the embedded default build, Ctrl-C, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openrlhf_act.cli import main
from openrlhf_act.devtools.processes import alive
from tests.conftest import requires_scienceworld

pytestmark = [pytest.mark.slow, requires_scienceworld]
ROOT = Path(__file__).resolve().parent.parent


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_collect_gold_paths_reach_score_100(tmp_path, capsys):
    out = tmp_path / "traj.jsonl"
    args = ["data", "collect", "--tasks", "find-non-living-thing,lifespan-longest-lived", "--variations", "train:2"]
    assert main([*args, "--out", str(out), "--workers", "2"]) == 0
    printed = capsys.readouterr().out  # Ray actors of earlier tests in this process may log here too
    stats = json.loads(printed[printed.index("{\n") :])
    trajectories = read(out)
    assert stats["kept"] == len(trajectories) == 4 and not stats["dropped"]
    assert [t["task_id"] for t in trajectories] == [
        "find-non-living-thing/v0",
        "find-non-living-thing/v1",
        "lifespan-longest-lived/v0",
        "lifespan-longest-lived/v1",
    ]
    for t in trajectories:
        assert t["outcome"] == {"score": 100.0, "success": True}
        assert t["env"] == "scienceworld" and t["task"].startswith("Your task is")
        assert t["steps"][0]["observation"].startswith("This room is called")
        assert all(s["admissible"] and s["action"] for s in t["steps"])
        assert t["steps"][-1]["score"] == 100.0 and t["meta"]["simplification"] == ""
    assert not out.with_name(out.name + ".partial").exists()
    manifest = json.loads(out.with_name("traj.manifest.json").read_text())
    assert manifest["counts"] == stats and manifest["env_versions"]["scienceworld"]["scienceworld"]


def test_unknown_task_and_bad_variation_are_clear_errors(tmp_path, capsys):
    out = str(tmp_path / "t.jsonl")
    assert main(["data", "collect", "--tasks", "find-unicorn", "--out", out]) == 2
    assert "unknown ScienceWorld task 'find-unicorn'" in capsys.readouterr().err
    assert main(["data", "collect", "--tasks", "find-plant", "--variations", "train:x", "--out", out]) == 2
    assert "bad variation limit" in capsys.readouterr().err
    assert main(["data", "collect", "--tasks", "find-plant", "--variations", "100000", "--out", out]) == 2
    assert "has variations 0..299, not [100000]" in capsys.readouterr().err


def test_main_job_embedded_default(tmp_path, capsys):
    out = tmp_path / "act"
    args = [
        "data",
        "build",
        "--out",
        str(out),
        "--tasks",
        "find-non-living-thing,find-plant",
        "--variations",
        "train:3",
    ]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "no --input: collecting ScienceWorld gold trajectories" in captured.err
    assert "admissible" in captured.err and "python -m openrlhf.cli.train_ppo_ray" in captured.out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["trajectories"] == 6
    assert manifest["counts"]["rows"]["train"] > 0 and manifest["counts"]["rows"]["eval"] > 0
    train = read(out / "train.jsonl")
    label = json.loads(train[0]["label"])
    assert label["env"] == "scienceworld" and label["expert"] in label["candidates"]
    # the second run reuses the collected trajectories and rebuilds identical data
    first = (out / "train.jsonl").read_bytes()
    assert main(args) == 0
    assert "reusing" in capsys.readouterr().err
    assert (out / "train.jsonl").read_bytes() == first


def _descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def test_ctrl_c_closes_every_jvm_and_the_collection_resumes(tmp_path):
    import psutil

    out = tmp_path / "traj.jsonl"
    partial = out.with_name(out.name + ".partial")
    command = [
        sys.executable,
        "-m",
        "openrlhf_act",
        "data",
        "collect",
        "--tasks",
        "find-living-thing",
        "--out",
        str(out),
    ]
    command += ["--variations", "train:8", "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        seen: set[int] = set()
        while time.time() < deadline and not (partial.exists() and partial.read_text().count("\n") >= 1):
            seen.update(_descendants(proc.pid))
            time.sleep(0.2)
        assert partial.exists(), "no episode finished within 2 minutes"
        seen.update(_descendants(proc.pid))
        java = [p for p in seen if psutil.pid_exists(p) and "java" in psutil.Process(p).name()]
        assert java, "expected the workers' JVMs to be running"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    # The workers' JVMs are stopped before the collector exits; a loaded machine reaps them late: wait for a condition.
    deadline = time.monotonic() + 30
    while (left := [pid for pid in seen if alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"processes left behind after Ctrl-C: {left}"
    assert not out.exists() and partial.exists()
    done_before = partial.read_text().count("\n")

    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["resumed"] == done_before and stats["kept"] == 8
    assert len(read(out)) == 8 and not partial.exists()
