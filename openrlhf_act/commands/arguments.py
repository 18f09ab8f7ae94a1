"""Option values shared by the command groups: ``KEY=VALUE`` options, id lists, the state window, the prompt budget."""

from __future__ import annotations

import argparse
import json
from typing import Any

from openrlhf_act.errors import UsageError


def parse_options(pairs: list[str], what: str) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; a value that parses as JSON (numbers, true, objects) is taken as such."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{what} {pair!r} is not KEY=VALUE")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


def parse_ids(spec: str | None) -> list[int] | None:
    """``0-9,12`` -> [0, ..., 9, 12]."""
    if not spec:
        return None
    ids: list[int] = []
    for part in spec.split(","):
        low, sep, high = part.strip().partition("-")
        try:
            ids += list(range(int(low), int(high) + 1)) if sep else [int(low)]
        except ValueError:
            raise UsageError(f"bad variation list {spec!r}: use numbers and ranges like 0-9,12") from None
    return ids


def prompt_budget_options(
    parser: argparse.ArgumentParser, *, limit: int | None, limit_default: str, tokenizer_default: str, over: str
) -> None:
    """``--max-prompt-tokens`` and ``--tokenizer``, one definition for every command whose prompts are
    fitted to a budget (``data build``, ``data export``, ``eval episodes``: one budget, one meaning).
    ``limit``: the default limit; ``over``: what becomes of a prompt that cannot fit."""
    group = parser.add_argument_group("prompt budget")
    group.add_argument(
        "--max-prompt-tokens",
        type=int,
        default=limit,
        help="no prompt is longer: the oldest history turns go first, then the current observation is clipped; "
        f"{over} ({limit_default})",
    )
    group.add_argument(
        "--tokenizer",
        default=None,
        help=f"count prompt tokens with this tokenizer's chat template ({tokenizer_default})",
    )


def state_options(parser: argparse.ArgumentParser) -> None:
    """What a state shows, one definition for the data commands and ``eval episodes``, so the policy
    is evaluated on the prompts it was trained on."""
    group = parser.add_argument_group("states (give evaluation the values the data was built with)")
    group.add_argument("--window", type=int, default=8, help="(observation, action) turns of history (default 8)")
    group.add_argument(
        "--max-state-tokens", type=int, default=4096, help="token budget of a state; oldest turns go first"
    )
    group.add_argument(
        "--max-observation-chars", type=int, default=16_000, help="longer observations are clipped in the middle"
    )
    group.add_argument(
        "--max-admissible-in-prompt",
        type=int,
        default=50,
        help="list admissible actions in the prompt only when there are at most this many (default 50)",
    )


def state_config(args: argparse.Namespace):
    """The :class:`~openrlhf_act.states.StateConfig` of :func:`state_options`' values."""
    from openrlhf_act.states import StateConfig

    try:
        return StateConfig(
            window=args.window, max_state_tokens=args.max_state_tokens, max_observation_chars=args.max_observation_chars
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
