"""Check the shell recipes against the installed OpenRLHF before any GPU is spent.

A wrong flag found after an hour of model loading is the costliest failure a recipe can have, so
each recipe is expanded with ``DRY_RUN=1`` (for every variant it declares in ``# recipe-check:``
lines), every printed command is parsed, and each OpenRLHF invocation is judged by OpenRLHF itself:
its module's ``if __name__ == "__main__":`` block (the argparse parser and the asserts that follow it)
runs from source, with a stand-in ``train`` and inert stand-ins for every non-stdlib import, so the
parser, types, choices and post-parse asserts of the installed version decide, and nothing can start.
On top of that come static checks of what OpenRLHF and DeepSpeed only find once the models are loaded:
reward and agent files, dataset splits and blends, the colocated GPU layout, the micro-batch split,
the Ray runtime environment and the data-kind flags of ``openrlhf_act.data_kinds.DATA_KINDS``.

Modules, in the order a check runs: ``recipes`` (finding, reading and expanding recipes),
``commands`` (the printed commands), ``launchers`` (the OpenRLHF part of each), ``openrlhf_main``
(OpenRLHF's own argument handling), ``checks`` and ``static_checks`` (judging one command),
``source_index`` and ``findings`` (placing each finding at ``script:line``), ``report`` (all recipes).
"""

from __future__ import annotations

from openrlhf_act.recipe_check.checks import check_command
from openrlhf_act.recipe_check.commands import Command, parse_dry_run
from openrlhf_act.recipe_check.findings import CommandCheck, Finding
from openrlhf_act.recipe_check.launchers import Launch, split_launch
from openrlhf_act.recipe_check.openrlhf_main import (
    MainRun,
    OpenRLHFMain,
    installed_openrlhf_version,
    openrlhf_main,
    openrlhf_root,
)
from openrlhf_act.recipe_check.recipes import (
    EXPAND_TIMEOUT_S,
    PRELUDE,
    RECIPE_VARS_ENV,
    Expansion,
    Recipe,
    default_recipes_dir,
    expand,
    find_recipes,
    list_settings,
    read_recipe,
    recipe_shell_vars,
    variants,
)
from openrlhf_act.recipe_check.report import (
    WRITTEN_FOR,
    Report,
    check_expansion,
    check_recipes,
    merge_variants,
    version_findings,
)
from openrlhf_act.recipe_check.source_index import SourceIndex, display_path

__all__ = [
    "EXPAND_TIMEOUT_S",
    "PRELUDE",
    "RECIPE_VARS_ENV",
    "WRITTEN_FOR",
    "Command",
    "CommandCheck",
    "Expansion",
    "Finding",
    "Launch",
    "MainRun",
    "OpenRLHFMain",
    "Recipe",
    "Report",
    "SourceIndex",
    "check_command",
    "check_expansion",
    "check_recipes",
    "default_recipes_dir",
    "display_path",
    "expand",
    "find_recipes",
    "installed_openrlhf_version",
    "list_settings",
    "merge_variants",
    "openrlhf_main",
    "openrlhf_root",
    "parse_dry_run",
    "read_recipe",
    "recipe_shell_vars",
    "split_launch",
    "variants",
    "version_findings",
]
