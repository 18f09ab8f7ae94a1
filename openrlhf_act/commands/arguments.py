"""Option values shared by the command groups: ``KEY=VALUE`` options and id lists."""

from __future__ import annotations

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
