"""The recipe scripts: finding and reading them, their declared variants and settings, and their
``DRY_RUN=1`` expansion, run with what the installed plugin tells them (``recipe_shell_vars``); and
the OpenRLHF command a recipe runs, as other commands show it (``recipe_invocation``)."""

from __future__ import annotations

import itertools
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from openrlhf_act.recipe_check.dry_run import assignment, parse_dry_run
from openrlhf_act.recipe_check.launchers import split_launch

PRELUDE = "common.sh"  # the mechanics: settings, dry run, launchers
FLAG_GROUPS = "openrlhf_flags.sh"  # the OpenRLHF flags the stages share
SOURCED = (PRELUDE, FLAG_GROUPS)  # sourced by the recipes, never run on their own
RECIPE_VARS_ENV = "OPENRLHF_ACT_RECIPE_VARS"
EXPAND_TIMEOUT_S = 120
_DIRECTIVE_RE = re.compile(r"^#\s*recipe-check(-env)?:\s*(.+?)\s*$")


@dataclass(frozen=True)
class Recipe:
    path: Path
    description: str
    axes: dict[str, tuple[str, ...]]
    example_env: dict[str, str]


def default_recipes_dir() -> Path | None:
    """``./recipes`` when run from a checkout, else the recipes next to this package (editable
    install), else the copy a wheel installs under ``<prefix>/share/openrlhf-act/recipes``."""
    for candidate in (
        Path.cwd() / "recipes",
        Path(__file__).resolve().parents[2] / "recipes",  # beside the openrlhf_act package
        Path(sys.prefix) / "share" / "openrlhf-act" / "recipes",
    ):
        if (candidate / PRELUDE).is_file():
            return candidate
    return None


def find_recipes(paths: Sequence[str | Path] = ()) -> list[Path]:
    """The recipe scripts named (files or folders), or every recipe of the default folder."""
    if not paths:
        folder = default_recipes_dir()
        if folder is None:
            raise FileNotFoundError("no recipes/ folder here or next to the package; name the scripts to check")
        paths = [folder]
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.glob("*.sh") if p.name not in SOURCED))
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"{raw}: no such recipe")
    return found


def read_recipe(path: Path) -> Recipe:
    """The header comment's first line, ``# recipe-check: NAME=a|b`` axes and ``# recipe-check-env:``."""
    summary: list[str] = []
    in_summary = True
    axes: dict[str, tuple[str, ...]] = {}
    example_env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            if line.strip():
                break
            continue
        if match := _DIRECTIVE_RE.match(line):
            for name, value in filter(None, map(assignment, shlex.split(match[2]))):
                if match[1]:
                    example_env[name] = value
                else:
                    axes[name] = tuple(v for v in value.split("|") if v)
        elif not line.startswith(("#!", "# shellcheck")) and in_summary:
            text = line.lstrip("#").strip()
            if text:
                summary.append(text)
            elif summary:
                in_summary = False
    return Recipe(path, " ".join(summary), axes, example_env)


def variants(recipe: Recipe, overrides: dict[str, Sequence[str]], environ: dict[str, str]) -> list[dict[str, str]]:
    """Every combination of the declared axes. An axis the environment already sets is pinned to that
    value (you check the run you are about to launch); ``overrides`` (``--preset``, ``--stages``) win."""
    axes: dict[str, Sequence[str]] = dict(recipe.axes)
    for name in axes:
        if environ.get(name):
            axes[name] = (environ[name],)
    for name, values in overrides.items():
        if values and (name in axes or name == "PRESET"):
            axes[name] = tuple(values)
    names = list(axes)
    return [dict(zip(names, combo)) for combo in itertools.product(*(axes[n] for n in names))]


def recipe_shell_vars() -> str:
    """Shell assignments the recipes ``eval`` (``openrlhf-act recipe vars``): what the installed plugin
    knows, from its registry, so recipes and registry cannot drift apart."""
    from openrlhf_act import __version__
    from openrlhf_act.devtools.openrlhf_cpu import cpu_environment
    from openrlhf_act.rewards.catalog import AGENT_EXECUTORS, rewards

    q = shlex.quote
    entries = {name: spec.entry_file for name, spec in rewards().items() if spec.entry_file}
    entries.update((name, path) for name, (path, _) in AGENT_EXECUTORS.items())
    files = " ".join(f"[{q(name)}]={q(path)}" for name, path in sorted(entries.items()))
    package_dir = Path(__file__).resolve().parents[1]  # openrlhf_act/, not this subpackage
    # Defaults only: the recipe keeps what the user set, and prepends to the user's PYTHONPATH itself.
    cpu_env = " ".join(f"[{name}]={q(value)}" for name, value in cpu_environment({}).items())
    return "\n".join(
        [
            f"ACT_VERSION={q(__version__)}",
            f"ACT_PACKAGE_DIR={q(str(package_dir))}",
            f"declare -gA ACT_CPU_ENV=({cpu_env})",
            f"declare -gA ACT_ENTRY_FILES=({files})",
        ]
    )


@dataclass
class Expansion:
    recipe: Recipe
    variant: dict[str, str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.variant.items())


def expand(recipe: Recipe, variant: dict[str, str], environ: dict[str, str], *, listing: bool = False) -> Expansion:
    """Run the recipe with ``DRY_RUN=1`` (it prints its commands and runs none of them), or with
    ``LIST_SETTINGS=1`` (it prints its settings, with true defaults: no ``recipe-check-env`` examples)."""
    env = {k: v for k, v in environ.items() if k not in ("DRY_RUN", "LIST_SETTINGS")}
    if not listing:
        env = {**recipe.example_env, **env}
    env.update(variant)
    env["LIST_SETTINGS" if listing else "DRY_RUN"] = "1"
    # This environment's openrlhf-act first, so the recipe asks the plugin being checked.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault(RECIPE_VARS_ENV, recipe_shell_vars())
    command = ["bash", str(recipe.path)]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=EXPAND_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return Expansion(recipe, variant, 124, "", f"the recipe did not finish in {EXPAND_TIMEOUT_S} s")
    return Expansion(recipe, variant, done.returncode, done.stdout, done.stderr)


def list_settings(recipe: Recipe, preset: str, environ: dict[str, str]) -> list[tuple[str, str, str]]:
    """(name, default, doc) of every setting the recipe declares, as ``LIST_SETTINGS=1`` prints them."""
    listed = expand(recipe, {"PRESET": preset}, environ, listing=True)
    if listed.returncode != 0:
        raise RuntimeError(f"{recipe.path}: LIST_SETTINGS=1 failed: {last_line(listed.stderr)}")
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    return [(row[1], row[2], row[3]) for row in rows if len(row) == 4 and row[0] == "setting"]


def last_line(text: str) -> str:
    """The last non-blank line of a recipe's stderr: the reason it stopped."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def recipe_invocation(name: str, settings: dict[str, str]) -> str:
    """How to run the recipe ``name`` with ``settings``, and the OpenRLHF command it then runs, taken
    from its ``DRY_RUN=1`` output (launcher left out; flags of one section share a line): the recipe
    stays the one place where OpenRLHF flags are written. Settings of this environment apply, as they would."""
    folder = default_recipes_dir()
    path = folder / name if folder else Path("recipes") / name
    run = " ".join([*(f"{k}={shlex.quote(v)}" for k, v in settings.items()), "bash", display_path(path)])
    if not path.is_file():
        return run
    expansion = expand(read_recipe(path), {}, {**os.environ, **settings})
    launches = [split_launch(command.argv) for command in parse_dry_run(expansion.stdout)[0]]
    launch = next((lc for lc in launches if lc and lc.module.startswith("openrlhf.")), None)
    if expansion.returncode != 0 or launch is None:
        return run
    items: list[list[str]] = []  # each flag with its values
    for token in launch.args:
        if token.startswith("--") or not items:
            items.append([])
        items[-1].append(shlex.quote(token))
    lines = [f"python -m {launch.module}"]
    section = None
    for item in items:
        text = " ".join(item)
        if item[0].split(".")[0] == section and len(lines[-1]) + len(text) < 100:
            lines[-1] += " " + text
        else:
            lines.append(text)
        section = item[0].split(".")[0]
    return f"{run}\n\nwhich runs (DRY_RUN=1 prints it with its launcher):\n\n" + " \\\n    ".join(lines)
