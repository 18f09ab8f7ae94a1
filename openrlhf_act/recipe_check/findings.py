"""Findings, and the collector that places each finding of one command at the recipe line that
wrote the offending text."""

from __future__ import annotations

from dataclasses import dataclass

from openrlhf_act.recipe_check.commands import Command
from openrlhf_act.recipe_check.launchers import split_launch
from openrlhf_act.recipe_check.source_index import SourceIndex, display_path


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


class CommandCheck:
    """Collects the findings for one OpenRLHF command of one expansion."""

    def __init__(self, index: SourceIndex, command: Command, variant: str, environ: dict[str, str]):
        self.index = index
        self.command = command
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
            where = self._module_line() or display_path(self.index.script)
        self.findings.append(Finding(level, where, message, self.variant))

    def _module_line(self) -> str | None:
        launch = split_launch(self.command.argv)
        return self.index.locate(launch.module, self.command.recipe) if launch else None

    def _env_origin(self, text: str) -> str | None:
        for name, value in self.environ.items():
            if name.isupper() and text in value.split():
                return name
        return None
