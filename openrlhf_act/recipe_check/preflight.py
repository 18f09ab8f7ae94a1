"""The checks a stage runs right before its OpenRLHF command (``openrlhf-act recipe preflight -- ARGV``,
called by the recipes' launchers when they really run): everything ``recipe check`` judges for that
command and its data files, then what only this machine can say: the checkpoints the stage keeps fit on
the disk, and the Ray cluster the driver will join has the GPUs and CPUs the stage asks for
(``resources``). Each problem stops the stage before any model loads, naming the setting to change."""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from openrlhf_act.recipe_check.checks import check_command
from openrlhf_act.recipe_check.dry_run import Command
from openrlhf_act.recipe_check.findings import CommandCheck, Finding, SourceIndex
from openrlhf_act.recipe_check.launchers import split_launch
from openrlhf_act.recipe_check.recipes import display_path
from openrlhf_act.recipe_check.resources import check_ray_cluster, ray_need
from openrlhf_act.recipe_check.static_checks import arg_value

GB = 1e9
# Bytes per parameter a DeepSpeed checkpoint holds: bf16 weights + fp32 master weights, Adam's m and v.
_RESUMABLE_BYTES_PER_PARAM = 2 + 4 + 4 + 4
_HF_BYTES_PER_PARAM = 2  # a bf16 Hugging Face copy


def model_parameters(model: str) -> int | None:
    """Parameters of a local or cached Hugging Face checkpoint, from its safetensors headers; None if unknown."""
    folder = Path(model)
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(model, local_files_only=True, allow_patterns=["*.safetensors", "*.json"]))
        except Exception:  # not in the cache, no hub client: the size is unknown here
            return None
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    count = 0
    for file in files:
        with file.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        for name, tensor in header.items():
            if name != "__metadata__":
                count += math.prod(tensor["shape"])
    return count


def disk_findings(args: Any, module: str) -> list[str]:
    """Checkpoints the stage keeps (estimated from the model's parameters and the save settings) against
    the free space where they go."""
    model = arg_value(args, "actor.model_name_or_path") or arg_value(args, "model.model_name_or_path")
    params = model_parameters(model) if model else None
    save_path = arg_value(args, "ckpt.output_dir")
    if params is None or not save_path:
        return []
    resumable = 0 if arg_value(args, "ckpt.save_steps") in (-1, None) else (arg_value(args, "ckpt.max_num") or 1)
    best = module == "openrlhf.cli.train_ppo_ray" and resumable and arg_value(args, "ckpt.best_metric_key") != "none"
    parts = {
        "resumable checkpoint(s) (model + optimizer)": (resumable + int(bool(best))) * _RESUMABLE_BYTES_PER_PARAM,
        "Hugging Face copies": resumable * _HF_BYTES_PER_PARAM if arg_value(args, "ckpt.save_hf") else 0,
        "final model": _HF_BYTES_PER_PARAM,
    }
    need = sum(parts.values()) * params
    where = Path(arg_value(args, "ckpt.path") or save_path)
    existing = next(p for p in [where, *where.parents] if p.exists())
    free = shutil.disk_usage(existing).free
    if need <= free:
        return []
    spelled = ", ".join(f"{name} {value * params / GB:.1f} GB" for name, value in parts.items() if value)
    return [
        f"this stage's checkpoints need about {need / GB:.1f} GB ({spelled}; an estimate from {params / 1e9:.2f} B "
        f"parameters of {model}) but {existing} has {free / GB:.1f} GB free: free space, set OUTPUT_DIR to a larger "
        "disk, or keep fewer checkpoints (KEEP_CHECKPOINTS=1, or SAVE_STEPS=-1 for none)"
    ]


def preflight(
    argv: Sequence[str], recipe: Path, *, data_kind: str | None = None, wait_s: float = 300.0
) -> list[Finding]:
    """Every check for one command about to run; errors stop the stage."""
    from openrlhf_act.recipe_check.openrlhf_main import openrlhf_main

    launch = split_launch(argv)
    if launch is None or not launch.module.startswith("openrlhf."):
        return []
    here = launch.launcher != "ray job submit"  # a job's files, disk and cluster are the cluster's to judge
    environ = dict(os.environ)
    check = CommandCheck(SourceIndex(recipe), Command(0, list(argv), recipe.name, data_kind), launch, "", environ)
    findings = check_command(check, check_data=here)
    run = openrlhf_main(launch.module).run(launch.args)
    if not here or any(f.level == "error" for f in findings) or run.args is None:
        return findings
    where = display_path(recipe)
    findings += [Finding("error", where, problem) for problem in disk_findings(run.args, launch.module)]
    if launch.module == "openrlhf.cli.train_ppo_ray":
        problem = check_ray_cluster(ray_need(run.args), wait_s)
        if problem:
            findings.append(Finding("error", where, problem))
    return findings
