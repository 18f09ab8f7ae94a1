"""Whole recipes: expand every variant, judge every OpenRLHF command it prints, and merge the findings
into one report."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from openrlhf_act.recipe_check.checks import check_command
from openrlhf_act.recipe_check.commands import parse_dry_run
from openrlhf_act.recipe_check.findings import Finding
from openrlhf_act.recipe_check.launchers import split_launch
from openrlhf_act.recipe_check.openrlhf_main import installed_openrlhf_version
from openrlhf_act.recipe_check.recipes import Expansion, expand, find_recipes, last_line, read_recipe, variants
from openrlhf_act.recipe_check.source_index import SourceIndex, display_path

WRITTEN_FOR = "0.11.2"


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    recipes: int = 0
    expansions: int = 0
    commands: int = 0
    openrlhf_version: str | None = None

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]


def version_findings(installed: str | None) -> list[Finding]:
    if installed is None:
        return [
            Finding("error", "openrlhf", f"OpenRLHF is not installed here; install openrlhf=={WRITTEN_FOR} to check")
        ]
    if installed != WRITTEN_FOR:
        return [
            Finding(
                "warning",
                "openrlhf",
                f"installed OpenRLHF is {installed}, the recipes were written for {WRITTEN_FOR}: "
                f"flags are judged by {installed}",
            )
        ]
    return []


def check_expansion(expansion: Expansion, environ: dict[str, str], *, check_data: bool) -> tuple[list[Finding], int]:
    """Findings of one DRY_RUN expansion and the number of OpenRLHF commands it printed."""
    script = expansion.recipe.path
    index = SourceIndex(script)
    label = expansion.label
    if expansion.returncode != 0:
        reason = last_line(expansion.stderr) or f"exit status {expansion.returncode}"
        return [Finding("error", display_path(script), f"DRY_RUN=1 failed: {reason}", label)], 0
    commands, problems = parse_dry_run(expansion.stdout)
    findings = [Finding("error", display_path(script), p, label) for p in problems]
    env = dict(environ)
    env.update(expansion.recipe.example_env)
    env.update(expansion.variant)
    count = 0
    for command in commands:
        launch = split_launch(command.argv)
        if launch is None or not launch.module.startswith("openrlhf."):
            continue
        count += 1
        findings += check_command(command, launch, index, label, env, check_data=check_data)
    if count == 0:
        findings.append(Finding("error", display_path(script), "DRY_RUN=1 printed no OpenRLHF command", label))
    return findings, count


def check_recipes(
    scripts: Sequence[str | Path] = (),
    *,
    presets: Sequence[str] = (),
    stages: Sequence[str] = (),
    check_data: bool = False,
    environ: dict[str, str] | None = None,
    openrlhf_version: str | None = None,
    workers: int = 4,
) -> Report:
    """Expand every recipe variant and judge every OpenRLHF command; see the ``openrlhf_act.recipe_check`` docstring."""
    environ = dict(os.environ if environ is None else environ)
    version = openrlhf_version or installed_openrlhf_version()
    report = Report(openrlhf_version=version)
    report.findings += version_findings(version)
    if version is None:
        return report
    recipes = [read_recipe(p) for p in find_recipes(scripts)]
    report.recipes = len(recipes)
    overrides = {"PRESET": list(presets), "STAGES": list(stages)}
    jobs = [(r, v) for r in recipes for v in variants(r, overrides, environ)]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        expansions = list(pool.map(lambda job: expand(job[0], job[1], environ), jobs))
    report.expansions = len(expansions)
    findings: list[Finding] = []
    for expansion in expansions:  # sequential: OpenRLHF's main blocks run in this process
        found, count = check_expansion(expansion, environ, check_data=check_data)
        findings += found
        report.commands += count
    report.findings += merge_variants(findings)
    return report


def merge_variants(findings: Iterable[Finding]) -> list[Finding]:
    """One line per problem: the same finding in several variants names the first and counts the rest."""
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for f in findings:
        grouped.setdefault((f.level, f.where, f.message), []).append(f.variant)
    merged = []
    for (level, where, message), labels in grouped.items():
        labels = list(dict.fromkeys(labels))
        variant = labels[0] + (f" and {len(labels) - 1} more variant(s)" if len(labels) > 1 else "")
        merged.append(Finding(level, where, message, variant))
    return merged
