"""Reward constants, their presets, and how a user sets them without editing code.

OpenRLHF instantiates our entry files with no arguments inside its Ray rollout actors, so the one
channel that reaches them is the environment: ``OPENRLHF_ACT_REWARD_PRESET`` (``paper`` or
``binary``) and ``OPENRLHF_ACT_REWARD_CONFIG`` (a JSON object overriding single constants). Recipes
forward both through Ray's runtime environment.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields, replace
from typing import Any

PRESET_ENV = "OPENRLHF_ACT_REWARD_PRESET"
CONFIG_ENV = "OPENRLHF_ACT_REWARD_CONFIG"


@dataclass(frozen=True)
class RewardConfig:
    """All reward constants. ``scores`` stay raw correctness (0/1) whatever these are."""

    # ACT judgment reward
    correct: float = 1.0
    wrong: float = 0.0
    malformed: float = -0.5
    verdict_tag: str = "answer"
    # next-action reward (RL stage)
    exact: float = 1.0
    admissible: float = 0.1
    other: float = 0.0
    unparseable: float = -0.5
    # a label that cannot be decoded is a data error, not the policy's fault
    label_error: float = 0.0


PRESETS: dict[str, RewardConfig] = {
    "paper": RewardConfig(),
    "binary": RewardConfig(malformed=0.0, admissible=0.0, unparseable=0.0),
}


def make_config(preset: str = "paper", overrides: dict[str, Any] | None = None) -> RewardConfig:
    """A preset with single constants overridden; unknown names or bad types raise ``ValueError``."""
    if preset not in PRESETS:
        raise ValueError(f"unknown reward preset {preset!r}; choose one of {sorted(PRESETS)}")
    config = PRESETS[preset]
    if not overrides:
        return config
    known = {f.name: f.type for f in fields(RewardConfig)}
    clean: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in known:
            raise ValueError(f"unknown reward constant {key!r}; known: {sorted(known)}")
        if key == "verdict_tag":
            if not isinstance(value, str) or not value.strip() or not value.replace("_", "").isalnum():
                raise ValueError("verdict_tag must be a non-empty alphanumeric tag name")
            clean[key] = value
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"reward constant {key!r} must be a number, got {value!r}")
            clean[key] = float(value)
    return replace(config, **clean)


def config_from_env(environ: dict[str, str] | None = None) -> RewardConfig:
    """Read the preset and overrides from the environment (see module docstring)."""
    env = os.environ if environ is None else environ
    preset = env.get(PRESET_ENV, "paper").strip() or "paper"
    raw = env.get(CONFIG_ENV, "").strip()
    overrides = None
    if raw:
        try:
            overrides = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{CONFIG_ENV} is not valid JSON: {exc.msg}") from None
        if not isinstance(overrides, dict):
            raise ValueError(f"{CONFIG_ENV} must be a JSON object")
    return make_config(preset, overrides)
