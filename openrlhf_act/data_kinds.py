"""Data kinds: each row shape we write, its columns and the OpenRLHF program that reads it.

What a row shape IS lives here; how OpenRLHF is told to read it lives in the recipes' command lines
(``recipes/*.sh``, the one place OpenRLHF flags are written). ``recipe check`` holds each recipe's
parsed ``--data.*`` options to the data kind it names (``DATA_KIND=...``), so the two cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataKind:
    """A row shape we write, the OpenRLHF program that reads it, and the columns it reads them from."""

    name: str
    description: str
    openrlhf_module: str
    columns: tuple[tuple[str, str], ...]  # (OpenRLHF's --data.<option>, the column our rows carry it in)
    multiturn: bool = False  # whole chats, every assistant turn a target (--data.multiturn)
    reward: str | None = None

    def expected_args(self) -> dict[str, str | bool]:
        """OpenRLHF's parsed ``--data`` options that read these rows (dotted name -> value). Every kind
        holds chat messages, so every kind needs the chat template."""
        expected: dict[str, str | bool] = {f"data.{option}": column for option, column in self.columns}
        if self.multiturn:
            expected["data.multiturn"] = True
        expected["data.apply_chat_template"] = True
        return expected

    @property
    def flags(self) -> tuple[str, ...]:
        """``expected_args`` as command-line flags, as a recipe writes them."""
        return tuple(
            f"--{name}" if value is True else f"--{name} {value}" for name, value in self.expected_args().items()
        )


_PROMPT_LABEL = (("input_key", "prompt"), ("label_key", "label"))
_PROMPT_RESPONSE = (("input_key", "prompt"), ("output_key", "response"))

DATA_KINDS: dict[str, DataKind] = {
    kind.name: kind
    for kind in (
        DataKind(
            "act_judgment",
            "contrast prompts: which of K candidate actions is better (ACT stage, GRPO)",
            "openrlhf.cli.train_ppo_ray",
            _PROMPT_LABEL,
            reward="act_judgment",
        ),
        DataKind(
            "next_action",
            "agent prompts at expert states, labelled with the expert action (RL stage, GRPO)",
            "openrlhf.cli.train_ppo_ray",
            _PROMPT_LABEL,
            reward="next_action",
        ),
        DataKind("sft", "agent prompt -> expert action (IL stage)", "openrlhf.cli.train_sft", _PROMPT_RESPONSE),
        DataKind(
            "sft_multiturn",
            "whole expert episodes as chats, every action a target (IL stage, --data.multiturn)",
            "openrlhf.cli.train_sft",
            (("input_key", "messages"),),
            multiturn=True,
        ),
        DataKind(
            "dpo",
            "agent prompt, chosen = expert action, rejected = sampled alternative (DPO control)",
            "openrlhf.cli.train_dpo",
            (("prompt_key", "prompt"), ("chosen_key", "chosen"), ("rejected_key", "rejected")),
        ),
        DataKind(
            "online_env",
            "one row per environment episode, played live by the online executor (beyond the paper)",
            "openrlhf.cli.train_ppo_ray",
            _PROMPT_LABEL,
        ),
        DataKind(
            "sft_choice",
            "contrast prompt -> the correct verdict, no reasoning (SFT-on-choice control)",
            "openrlhf.cli.train_sft",
            _PROMPT_RESPONSE,
        ),
        DataKind(
            "reflection",
            "agent prompt -> model-written rationale + expert action (Early Experience self-reflection baseline)",
            "openrlhf.cli.train_sft",
            _PROMPT_RESPONSE,
        ),
    )
}
