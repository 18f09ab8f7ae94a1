"""Judging recipes: expand every variant with ``DRY_RUN=1``, judge every OpenRLHF command it prints by
what OpenRLHF's own main block made of its arguments (unknown, abbreviated and stray flags, parse
errors, failed asserts) and by the static checks, and merge the findings into one report."""

from __future__ import annotations

import argparse
import difflib
import os
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from openrlhf_act.recipe_check.dry_run import parse_dry_run
from openrlhf_act.recipe_check.findings import CommandCheck, Finding, SourceIndex
from openrlhf_act.recipe_check.launchers import split_launch
from openrlhf_act.recipe_check.openrlhf_main import installed_openrlhf_version, openrlhf_main
from openrlhf_act.recipe_check.recipes import (
    Expansion,
    display_path,
    expand,
    find_recipes,
    last_line,
    read_recipe,
    variants,
)
from openrlhf_act.recipe_check.resources import cluster_findings
from openrlhf_act.recipe_check.static_checks import check_data_kind, check_datasets, check_semantics

WRITTEN_FOR = "0.11.2"

# Old flat flag names whose dotted successor is not just "<section>.<same name>".
_RENAMED = {
    "pretrain": ("--actor.model_name_or_path", "--model.model_name_or_path"),
    "remote_rm_url": ("--reward.remote_url",),
    "reward_pretrain": ("--reward.model_name_or_path",),
    "critic_pretrain": ("--critic.model_name_or_path",),
    "save_path": ("--ckpt.output_dir",),
    "ckpt_path": ("--ckpt.path",),
    "save_hf_ckpt": ("--ckpt.save_hf",),
    "load_checkpoint": ("--ckpt.load_enable",),
    "prompt_data": ("--data.prompt_dataset",),
    "prompt_data_probs": ("--data.prompt_probs",),
    "dataset": ("--data.dataset",),
    "learning_rate": ("--adam.lr",),
    "actor_learning_rate": ("--actor.adam.lr",),
    "critic_learning_rate": ("--critic.adam.lr",),
    "colocate_all_models": ("--train.colocate_all",),
    "gradient_checkpointing": ("--actor.gradient_checkpointing_enable", "--model.gradient_checkpointing_enable"),
    "micro_train_batch_size": ("--train.micro_batch_size",),
    "train_batch_size": ("--train.batch_size",),
    "micro_rollout_batch_size": ("--rollout.micro_batch_size",),
    "generate_max_len": ("--rollout.max_new_tokens",),
    "init_kl_coef": ("--algo.kl.init_coef",),
    "use_kl_loss": ("--algo.kl.use_loss",),
    "dynamic_filtering": ("--algo.dynamic_filtering_enable",),
    "use_wandb": ("--logger.wandb.key",),
}


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    recipes: int = 0
    expansions: int = 0
    commands: int = 0
    openrlhf_version: str | None = None

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]


def check_recipes(
    scripts: Sequence[str | Path] = (),
    *,
    presets: Sequence[str] = (),
    stages: Sequence[str] = (),
    check_data: bool = False,
    cluster: tuple[int, int] | None = None,
    environ: dict[str, str] | None = None,
    openrlhf_version: str | None = None,
    workers: int = 4,
) -> Report:
    """Expand every recipe variant and judge every OpenRLHF command; see the ``openrlhf_act.recipe_check`` docstring.
    ``cluster`` (nodes, GPUs per node) expands the recipes for that cluster and holds each stage to it."""
    environ = dict(os.environ if environ is None else environ)
    if cluster is not None:
        environ.update(NNODES=str(cluster[0]), GPUS_PER_NODE=str(cluster[1]))
        if cluster[0] > 1 and not environ.get("HOSTFILE"):
            environ["HOSTFILE"] = "hostfile"  # DeepSpeed stages need one on several nodes; its lines are not checked
    version = openrlhf_version or installed_openrlhf_version()
    report = Report(openrlhf_version=version)
    report.findings += version_findings(version)
    if version is None:
        return report
    recipes = [read_recipe(p) for p in find_recipes(scripts)]
    report.recipes = len(recipes)
    overrides = {"PRESET": list(presets), "STAGES": list(stages)}
    jobs = [(r, v) for r in recipes for v in variants(r, overrides, environ)]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        expansions = list(pool.map(lambda job: expand(job[0], job[1], environ), jobs))
    report.expansions = len(expansions)
    findings: list[Finding] = []
    for expansion in expansions:  # sequential: OpenRLHF's main blocks run in this process
        found, count = _check_expansion(expansion, environ, check_data=check_data, cluster=cluster)
        findings += found
        report.commands += count
    report.findings += _merge_variants(findings)
    return report


def version_findings(installed: str | None) -> list[Finding]:
    if installed is None:
        return [
            Finding("error", "openrlhf", f"OpenRLHF is not installed here; install openrlhf=={WRITTEN_FOR} to check")
        ]
    if installed != WRITTEN_FOR:
        message = (
            f"installed OpenRLHF is {installed}, the recipes were written for {WRITTEN_FOR}: "
            f"flags are judged by {installed}"
        )
        return [Finding("warning", "openrlhf", message)]
    return []


def _check_expansion(
    expansion: Expansion, environ: dict[str, str], *, check_data: bool, cluster: tuple[int, int] | None
) -> tuple[list[Finding], int]:
    """Findings of one DRY_RUN expansion and the number of OpenRLHF commands it printed."""
    script, label = expansion.recipe.path, expansion.label
    if expansion.returncode != 0:
        reason = last_line(expansion.stderr) or f"exit status {expansion.returncode}"
        return [Finding("error", display_path(script), f"DRY_RUN=1 failed: {reason}", label)], 0
    commands, problems = parse_dry_run(expansion.stdout)
    findings = [Finding("error", display_path(script), p, label) for p in problems]
    env = {**environ, **expansion.recipe.example_env, **expansion.variant}
    index = SourceIndex(script)
    count = 0
    for command in commands:
        launch = split_launch(command.argv)
        if launch is not None and launch.module.startswith("openrlhf."):
            count += 1
            check = CommandCheck(index, command, launch, label, env)
            findings += check_command(check, check_data=check_data, cluster=cluster)
    if count == 0:
        findings.append(Finding("error", display_path(script), "DRY_RUN=1 printed no OpenRLHF command", label))
    return findings, count


def check_command(check: CommandCheck, *, check_data: bool, cluster: tuple[int, int] | None = None) -> list[Finding]:
    """Findings of one OpenRLHF command: its flags by OpenRLHF's own main block, the static checks, with
    ``check_data`` its data files, with ``cluster`` the GPUs it asks for."""
    launch = check.launch
    for locate, message in launch.problems:
        check.add("error", message, locate)
    try:
        main = openrlhf_main(launch.module)
    except LookupError as exc:
        check.add("error", str(exc), launch.module)
        return check.findings
    run = main.run(launch.args)
    short = launch.module.rsplit(".", 1)[-1]
    for name in run.unknown:
        check.add("error", f"unknown flag {name} for {short}{_suggest(name, run.options)}", name)
    for given, full in run.abbreviated:
        check.add("warning", f"{given} is an abbreviation of {full}: write the full flag", given)
    for name, value in run.stray:
        check.add("error", f"{name} takes no value, but {value!r} follows it", name)
    if run.error:
        check.add("error", f"{short}: {run.error}", _flag_in_message(run.error))
    if run.failed_assert:
        check.add("error", f"{short} refuses these arguments: {run.failed_assert}", launch.module)
    if run.exception:
        check.add("error", f"{short}'s argument handling failed: {run.exception}", launch.module)
    for name in sorted(set(run.skipped_imports)):
        check.add("warning", f"{short}'s main block imports {name}; checks that need it were skipped", launch.module)
    for line in run.printed:
        if line.strip():
            check.add("warning", f"{short} says: {line.strip()}", launch.module)
    if run.args is not None:
        check_semantics(check, main, run.args)
        check_data_kind(check, run.args)
        if check_data:
            check_datasets(check, run.args)
        if cluster is not None and launch.module == "openrlhf.cli.train_ppo_ray":
            for problem in cluster_findings(run.args, *cluster):
                check.add("error", problem, "--actor.num_gpus_per_node")
    return check.findings


def _merge_variants(findings: Iterable[Finding]) -> list[Finding]:
    """One line per problem: the same finding in several variants names the first and counts the rest."""
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for f in findings:
        grouped.setdefault((f.level, f.where, f.message), []).append(f.variant)
    merged = []
    for (level, where, message), labels in grouped.items():
        labels = list(dict.fromkeys(labels))
        variant = labels[0] + (f" and {len(labels) - 1} more variant(s)" if len(labels) > 1 else "")
        merged.append(Finding(level, where, message, variant))
    return merged


def _suggest(name: str, options: dict[str, argparse.Action]) -> str:
    last = name.lstrip("-").rsplit(".", 1)[-1]
    hints = [o for o in _RENAMED.get(last, ()) if o in options]
    hints += [o for o in options if o.rsplit(".", 1)[-1] == last and o != name and o not in hints]
    if not hints:
        hints = difflib.get_close_matches(name, list(options), n=1, cutoff=0.75)
    hint = f"; did you mean {' or '.join(hints[:2])}?" if hints else ""
    if "." not in name:
        hint += " (OpenRLHF >= 0.10.2 spells every flag in dotted form)"
    return hint


def _flag_in_message(message: str) -> str | None:
    match = re.match(r"argument (\S+?)[:/ ]", message)
    return match[1] if match else None
