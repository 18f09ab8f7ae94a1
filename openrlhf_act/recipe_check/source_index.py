"""Where a flag or module is written in the recipes, so each finding points at ``script:line``."""

from __future__ import annotations

import re
from pathlib import Path

from openrlhf_act.recipe_check.recipes import PRELUDE

# Lines that mention flags without passing them: comments and `setting NAME DEFAULT "doc"` declarations.
_DOC_LINE_PREFIXES = ("#", "setting ")


class SourceIndex:
    """Finds the recipe line where a flag or module is written: the recipe that printed the command
    first, then the prelude (inside the functions that recipe calls first), then the rest of the folder."""

    def __init__(self, script: Path):
        self.script = script
        self.folder = script.parent
        self._lines: dict[Path, list[str]] = {}

    def _read(self, path: Path) -> list[str]:
        if path not in self._lines:
            self._lines[path] = path.read_text().splitlines()
        return self._lines[path]

    def _candidates(self, hint: str | None) -> list[Path]:
        order = []
        if hint and (self.folder / hint).is_file():
            order.append(self.folder / hint)
        order += [self.script, self.folder / PRELUDE, *sorted(self.folder.glob("*.sh"))]
        return list(dict.fromkeys(p for p in order if p.is_file()))

    def _line_order(self, path: Path, caller: Path) -> list[int]:
        """Line numbers of ``path``; for the prelude, those of the functions ``caller`` uses come first."""
        lines = self._read(path)
        numbers = list(range(1, len(lines) + 1))
        if path.name != PRELUDE or caller == path:
            return numbers
        spans = _function_spans(lines)
        used = _called_functions("\n".join(self._read(caller)), spans, lines)
        inside = {n for name in used for n in range(spans[name][0], spans[name][1] + 1)}
        return sorted(numbers, key=lambda n: n not in inside)

    def locate(self, needle: str, hint: str | None = None) -> str | None:
        pattern = re.compile(rf"(?<![\w.-]){re.escape(needle)}(?![\w.-])")
        candidates = self._candidates(hint)
        for path in candidates:
            lines = self._read(path)
            for number in self._line_order(path, candidates[0]):
                line = lines[number - 1]
                if not line.lstrip().startswith(_DOC_LINE_PREFIXES) and pattern.search(line):
                    return f"{display_path(path)}:{number}"
        return None


def _function_spans(lines: list[str]) -> dict[str, tuple[int, int]]:
    """Shell functions written ``name() {`` ... ``}`` (at the start of a line): name -> (first, last) line."""
    spans: dict[str, tuple[int, int]] = {}
    name, first = None, 0
    for number, line in enumerate(lines, 1):
        if match := re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\(\)\s*\{", line):
            name, first = match[1], number
        elif name and line.startswith("}"):
            spans[name] = (first, number)
            name = None
    return spans


def _called_functions(text: str, spans: dict[str, tuple[int, int]], lines: list[str]) -> set[str]:
    """The functions ``text`` calls, directly or through each other."""
    called: set[str] = set()
    pending = [text]
    while pending:
        body = pending.pop()
        for name, (first, last) in spans.items():
            if name not in called and re.search(rf"\b{name}\b", body):
                called.add(name)
                pending.append("\n".join(lines[first:last]))
    return called


def display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
