"""Judging one OpenRLHF command: what its main block made of the arguments (unknown, abbreviated and
stray flags, parse errors, failed asserts), then the static checks."""

from __future__ import annotations

import argparse
import difflib
import re

from openrlhf_act.recipe_check.commands import Command
from openrlhf_act.recipe_check.findings import CommandCheck, Finding
from openrlhf_act.recipe_check.launchers import Launch
from openrlhf_act.recipe_check.openrlhf_main import openrlhf_main
from openrlhf_act.recipe_check.source_index import SourceIndex
from openrlhf_act.recipe_check.static_checks import check_data_kind, check_datasets, check_semantics

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


def check_command(
    command: Command, launch: Launch, index: SourceIndex, variant: str, environ: dict[str, str], *, check_data: bool
) -> list[Finding]:
    check = CommandCheck(index, command, variant, environ)
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
        flag = _flag_in_message(run.error)
        check.add("error", f"{short}: {run.error}", flag)
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
        check_semantics(check, launch, main, run.args)
        check_data_kind(check, command, launch)
        if check_data:
            check_datasets(check, launch, run.args)
    return check.findings


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
