"""What a recipe prints under ``DRY_RUN=1``: one shell-quoted command per line, after the ``# recipe:``
and ``# data-kind:`` notes that say where it comes from. Also the one place that splits a command's
words: ``NAME=value`` assignments and ``--option=value`` tokens."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

_NOTE_RE = re.compile(r"^#\s*(recipe|data-kind):\s*(\S+)")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def assignment(word: str) -> tuple[str, str] | None:
    """``NAME=value`` (a shell variable assignment) -> (NAME, value); any other word -> None."""
    name, sep, value = word.partition("=")
    return (name, value) if sep and _NAME_RE.match(name) else None


def option(token: str) -> tuple[str, str | None]:
    """``--name=value`` -> (--name, value); ``--name`` -> (--name, None)."""
    name, sep, value = token.partition("=")
    return name, value if sep else None


@dataclass
class Command:
    number: int  # line in the DRY_RUN output
    argv: list[str]
    recipe: str | None  # from the `# recipe: NAME` note
    data_kind: str | None  # from the `# data-kind: KIND` note


def parse_dry_run(text: str) -> tuple[list[Command], list[str]]:
    """Commands (one per line, shell-quoted) and the lines that are not valid shell words."""
    commands: list[Command] = []
    problems: list[str] = []
    recipe = kind = None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            if match := _NOTE_RE.match(stripped):
                if match[1] == "recipe":
                    recipe, kind = match[2], None
                else:
                    kind = match[2]
            continue
        try:
            argv = shlex.split(stripped)
        except ValueError as exc:
            problems.append(f"DRY_RUN output line {number} is not valid shell ({exc}): {stripped[:120]}")
            continue
        commands.append(Command(number, argv, recipe, kind))
    return commands, problems
