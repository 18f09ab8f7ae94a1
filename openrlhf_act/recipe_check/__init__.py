"""Check the shell recipes against the installed OpenRLHF before any GPU is spent.

A wrong flag found after an hour of model loading is the costliest failure a recipe can have, so
each recipe is expanded with ``DRY_RUN=1`` (for every variant it declares in ``# recipe-check:``
lines), every printed command is parsed, and each OpenRLHF invocation is judged by OpenRLHF itself:
its module's ``if __name__ == "__main__":`` block (the argparse parser and the asserts that follow it)
runs from source, with a stand-in ``train`` and inert stand-ins for every non-stdlib import, so the
parser, types, choices and post-parse asserts of the installed version decide, and nothing can start.
On top of that come static checks of what OpenRLHF and DeepSpeed only find once the models are loaded:
reward and agent files, dataset splits and blends, the colocated GPU layout, the micro-batch split,
the Ray runtime environment, the ``--data.*`` options against the data kind the recipe names
(``openrlhf_act.data_kinds.DATA_KINDS``), fp16 in a GRPO stage, and rollout layouts that would deal
micro-batches unevenly over the actor ranks (proven with OpenRLHF's own dispatch code). The recipes are
the one place OpenRLHF flags are written; this package only reads what they print. The same checks run
at the start of every stage (``preflight``), with what only the machine can say: disk and the Ray cluster.

Modules, in the order a check runs: ``recipes`` (finding, reading and expanding recipes),
``dry_run`` (the printed commands and their words), ``launchers`` (the OpenRLHF part of each),
``openrlhf_main`` (OpenRLHF's own argument handling), ``checks`` (judging commands, the whole report)
with ``static_checks`` and ``layout``, ``findings`` (each finding placed at ``script:line``), and for a stage
about to run ``preflight`` with ``resources`` (the Ray resources it asks for, the cluster it will join).
"""

from __future__ import annotations

from openrlhf_act.recipe_check.checks import WRITTEN_FOR, check_recipes, version_findings
from openrlhf_act.recipe_check.dry_run import Command, parse_dry_run
from openrlhf_act.recipe_check.launchers import split_launch
from openrlhf_act.recipe_check.openrlhf_main import openrlhf_main
from openrlhf_act.recipe_check.recipes import (
    default_recipes_dir,
    display_path,
    find_recipes,
    list_settings,
    read_recipe,
    recipe_invocation,
    recipe_shell_vars,
)

__all__ = [
    "WRITTEN_FOR",
    "Command",
    "check_recipes",
    "default_recipes_dir",
    "display_path",
    "find_recipes",
    "list_settings",
    "openrlhf_main",
    "parse_dry_run",
    "read_recipe",
    "recipe_invocation",
    "recipe_shell_vars",
    "split_launch",
    "version_findings",
]
