"""Findings, placed at the recipe line that wrote the offending text: every OpenRLHF flag is written in
the recipe that prints its command or in the shared flag groups (``openrlhf_flags.sh``), every launcher
word in the prelude (``common.sh``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from openrlhf_act.recipe_check.dry_run import Command
from openrlhf_act.recipe_check.launchers import Launch
from openrlhf_act.recipe_check.recipes import FLAG_GROUPS, PRELUDE, display_path

# Lines that mention flags without passing them: comments and `setting NAME DEFAULT "doc"` declarations.
_DOC_LINE_PREFIXES = ("#", "setting ")


@dataclass(frozen=True)
class Finding:
    """One problem: ``where`` is ``path:line`` when the offending text was found in a recipe."""

    level: str  # "error" | "warning"
    where: str
    message: str
    variant: str = ""

    def __str__(self) -> str:
        suffix = f" [{self.variant}]" if self.variant else ""
        return f"{self.where}: {self.level}: {self.message}{suffix}"


class SourceIndex:
    """Finds the line where a flag or module is written: in the recipe that printed the command (a
    pipeline prints its stages' commands), in the recipe checked, in the shared flag groups, then in
    the prelude."""

    def __init__(self, script: Path):
        self.script = script
        self._lines: dict[Path, list[str]] = {}

    def locate(self, needle: str, recipe: str | None = None) -> str | None:
        pattern = re.compile(rf"(?<![\w.-]){re.escape(needle)}(?![\w.-])")
        folder = self.script.parent
        paths = [folder / recipe] if recipe else []
        for path in dict.fromkeys(
            p for p in [*paths, self.script, folder / FLAG_GROUPS, folder / PRELUDE] if p.is_file()
        ):
            if path not in self._lines:
                self._lines[path] = path.read_text().splitlines()
            for number, line in enumerate(self._lines[path], 1):
                if not line.lstrip().startswith(_DOC_LINE_PREFIXES) and pattern.search(line):
                    return f"{display_path(path)}:{number}"
        return None


class CommandCheck:
    """Collects the findings for one OpenRLHF command of one expansion."""

    def __init__(self, index: SourceIndex, command: Command, launch: Launch, variant: str, environ: dict[str, str]):
        self.index = index
        self.command = command
        self.launch = launch
        self.variant = variant
        self.environ = environ
        self.findings: list[Finding] = []

    def add(self, level: str, message: str, locate: str | None = None) -> None:
        where = self.index.locate(locate, self.command.recipe) if locate else None
        if where is None and locate:
            origin = self._env_origin(locate)
            if origin:
                message += f" (comes from ${origin})"
        if where is None:
            where = self.index.locate(self.launch.module, self.command.recipe) or display_path(self.index.script)
        self.findings.append(Finding(level, where, message, self.variant))

    def _env_origin(self, text: str) -> str | None:
        for name, value in self.environ.items():
            if name.isupper() and text in value.split():
                return name
        return None
