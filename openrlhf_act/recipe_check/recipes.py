"""The recipe scripts: finding and reading them, their declared variants and settings, and their
``DRY_RUN=1`` expansion, run with what the installed plugin tells them (``recipe_shell_vars``)."""

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

PRELUDE = "common.sh"
RECIPE_VARS_ENV = "OPENRLHF_ACT_RECIPE_VARS"
EXPAND_TIMEOUT_S = 120
_MATRIX_RE = re.compile(r"^#\s*recipe-check:\s*([A-Za-z_][A-Za-z0-9_]*)=(.+?)\s*$")
_EXAMPLE_ENV_RE = re.compile(r"^#\s*recipe-check-env:\s*(.+?)\s*$")


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
            found.extend(sorted(p for p in path.glob("*.sh") if p.name != PRELUDE))
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
        if match := _MATRIX_RE.match(line):
            axes[match[1]] = tuple(v.strip() for v in match[2].split("|") if v.strip())
        elif match := _EXAMPLE_ENV_RE.match(line):
            for word in shlex.split(match[1]):
                name, _, value = word.partition("=")
                example_env[name] = value
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
    from openrlhf_act.data_kinds import DATA_KINDS
    from openrlhf_act.devtools.openrlhf_cpu import cpu_environment
    from openrlhf_act.rewards.catalog import rewards

    q = shlex.quote
    files = " ".join(f"[{q(name)}]={q(spec.entry_file)}" for name, spec in sorted(rewards().items()) if spec.entry_file)
    flags = " ".join(f"[{q(name)}]={q(' '.join(kind.flags))}" for name, kind in DATA_KINDS.items())
    package_dir = Path(__file__).resolve().parents[1]  # openrlhf_act/, not this subpackage
    # Defaults only: the recipe keeps what the user set, and prepends to the user's PYTHONPATH itself.
    cpu_env = " ".join(f"[{name}]={q(value)}" for name, value in cpu_environment({}).items())
    return "\n".join(
        [
            f"ACT_VERSION={q(__version__)}",
            f"ACT_PACKAGE_DIR={q(str(package_dir))}",
            f"declare -gA ACT_CPU_ENV=({cpu_env})",
            f"declare -gA ACT_REWARD_FILES=({files})",
            f"declare -gA ACT_DATA_FLAGS=({flags})",
        ]
    )


def _recipe_env(base: dict[str, str], recipe: Recipe, variant: dict[str, str], **extra: str) -> dict[str, str]:
    env = dict(base)
    if "LIST_SETTINGS" not in extra:  # listing shows true defaults: the recipe stops before it needs examples
        for name, value in recipe.example_env.items():
            env.setdefault(name, value)
    env.update(variant)
    env.update(extra)
    # This environment's openrlhf-act first, so the recipe asks the plugin being checked.
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    env.setdefault(RECIPE_VARS_ENV, recipe_shell_vars())
    return env


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


def expand(recipe: Recipe, variant: dict[str, str], environ: dict[str, str]) -> Expansion:
    """Run the recipe with ``DRY_RUN=1``: it prints its commands and runs none of them."""
    env = _recipe_env(environ, recipe, variant, DRY_RUN="1")
    env.pop("LIST_SETTINGS", None)
    try:
        done = subprocess.run(
            ["bash", str(recipe.path)], env=env, capture_output=True, text=True, timeout=EXPAND_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return Expansion(recipe, variant, 124, "", f"DRY_RUN=1 did not finish in {EXPAND_TIMEOUT_S} s")
    return Expansion(recipe, variant, done.returncode, done.stdout, done.stderr)


def list_settings(recipe: Recipe, preset: str, environ: dict[str, str]) -> list[tuple[str, str, str]]:
    """(name, default, doc) of every setting the recipe declares, as ``LIST_SETTINGS=1`` prints them."""
    env = _recipe_env(environ, recipe, {"PRESET": preset}, LIST_SETTINGS="1")
    done = subprocess.run(
        ["bash", str(recipe.path)], env=env, capture_output=True, text=True, timeout=EXPAND_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{recipe.path}: LIST_SETTINGS=1 failed: {last_line(done.stderr)}")
    rows = []
    for line in done.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) == 4 and parts[0] == "setting":
            rows.append((parts[1], parts[2], parts[3]))
    return rows


def last_line(text: str) -> str:
    """The last non-blank line of a recipe's stderr: the reason it stopped."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
