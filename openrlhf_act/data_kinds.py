"""Data kinds: each row shape we write, the OpenRLHF program that reads it and the flags it needs.

The one home of those flags: ``openrlhf-act recipe vars`` hands them to the recipes, ``data build``
prints them, and ``recipe check`` holds every recipe to them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataKind:
    """A row shape we write, the OpenRLHF program that reads it, and the flags it needs."""

    name: str
    description: str
    openrlhf_module: str
    flags: tuple[str, ...]
    reward: str | None = None


DATA_KINDS: dict[str, DataKind] = {
    kind.name: kind
    for kind in (
        DataKind(
            "act_judgment",
            "contrast prompts: which of K candidate actions is better (ACT stage, GRPO)",
            "openrlhf.cli.train_ppo_ray",
            ("--data.input_key prompt", "--data.label_key label", "--data.apply_chat_template"),
            reward="act_judgment",
        ),
        DataKind(
            "next_action",
            "agent prompts at expert states, labelled with the expert action (RL stage, GRPO)",
            "openrlhf.cli.train_ppo_ray",
            ("--data.input_key prompt", "--data.label_key label", "--data.apply_chat_template"),
            reward="next_action",
        ),
        DataKind(
            "sft",
            "agent prompt -> expert action (IL stage)",
            "openrlhf.cli.train_sft",
            ("--data.input_key prompt", "--data.output_key response", "--data.apply_chat_template"),
        ),
        DataKind(
            "sft_multiturn",
            "whole expert episodes as chats, every action a target (IL stage, --data.multiturn)",
            "openrlhf.cli.train_sft",
            ("--data.input_key messages", "--data.multiturn", "--data.apply_chat_template"),
        ),
        DataKind(
            "dpo",
            "agent prompt, chosen = expert action, rejected = sampled alternative (DPO control)",
            "openrlhf.cli.train_dpo",
            (
                "--data.prompt_key prompt",
                "--data.chosen_key chosen",
                "--data.rejected_key rejected",
                "--data.apply_chat_template",
            ),
        ),
        DataKind(
            "online_env",
            "one row per environment episode, played live by the online executor (beyond the paper)",
            "openrlhf.cli.train_ppo_ray",
            ("--data.input_key prompt", "--data.label_key label", "--data.apply_chat_template"),
        ),
        DataKind(
            "sft_choice",
            "contrast prompt -> the correct verdict, no reasoning (SFT-on-choice control)",
            "openrlhf.cli.train_sft",
            ("--data.input_key prompt", "--data.output_key response", "--data.apply_chat_template"),
        ),
    )
}
