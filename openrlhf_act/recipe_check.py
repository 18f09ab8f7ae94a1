"""Check the shell recipes against the installed OpenRLHF before any GPU is spent.

A wrong flag found after an hour of model loading is the costliest failure a recipe can have, so
each recipe is expanded with ``DRY_RUN=1`` (for every variant it declares in ``# recipe-check:``
lines), every printed command is parsed, and each OpenRLHF invocation is judged by OpenRLHF itself:
its module's ``if __name__ == "__main__":`` block (the argparse parser and the asserts that follow it)
runs from source, with a stand-in ``train`` and inert stand-ins for every non-stdlib import, so the
parser, types, choices and post-parse asserts of the installed version decide, and nothing can start.
On top of that come static checks of what OpenRLHF and DeepSpeed only find once the models are loaded:
reward and agent files, dataset splits and blends, the colocated GPU layout, the micro-batch split,
the Ray runtime environment and the data-kind flags of ``openrlhf_act.registry.DATA_KINDS``.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import difflib
import importlib.util
import itertools
import json
import math
import os
import re
import shlex
import subprocess
import sys
import types
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

WRITTEN_FOR = "0.11.2"
PRELUDE = "common.sh"
RECIPE_VARS_ENV = "OPENRLHF_ACT_RECIPE_VARS"
EXPAND_TIMEOUT_S = 120
# OpenRLHF modules its main blocks import that are pure (stdlib only), so they run for real.
_PURE_OPENRLHF_MODULES = frozenset({"openrlhf.utils.config"})
# Old flat flag names whose dotted successor is not just "<section>.<same name>".
_RENAMED = {
    "pretrain": ("--actor.model_name_or_path", "--model.model_name_or_path"),
    "remote_rm_url": ("--reward.remote_url",),
    "reward_pretrain": ("--reward.model_name_or_path",),
    "critic_pretrain": ("--critic.model_name_or_path",),
    "save_path": ("--ckpt.output_dir",),
    "ckpt_path": ("--ckpt.path",),
    "save_hf_ckpt": ("--ckpt.save_hf",),
    "load_checkpoint": ("--ckpt.load_enable",),
    "prompt_data": ("--data.prompt_dataset",),
    "prompt_data_probs": ("--data.prompt_probs",),
    "dataset": ("--data.dataset",),
    "learning_rate": ("--adam.lr",),
    "actor_learning_rate": ("--actor.adam.lr",),
    "critic_learning_rate": ("--critic.adam.lr",),
    "colocate_all_models": ("--train.colocate_all",),
    "gradient_checkpointing": ("--actor.gradient_checkpointing_enable", "--model.gradient_checkpointing_enable"),
    "micro_train_batch_size": ("--train.micro_batch_size",),
    "train_batch_size": ("--train.batch_size",),
    "micro_rollout_batch_size": ("--rollout.micro_batch_size",),
    "generate_max_len": ("--rollout.max_new_tokens",),
    "init_kl_coef": ("--algo.kl.init_coef",),
    "use_kl_loss": ("--algo.kl.use_loss",),
    "dynamic_filtering": ("--algo.dynamic_filtering_enable",),
    "use_wandb": ("--logger.wandb.key",),
}
# Where each OpenRLHF program reads datasets: (section, dataset attr, split attr, probabilities attr).
_DATASET_ARGS = {
    "openrlhf.cli.train_ppo_ray": (
        ("data", "prompt_dataset", "prompt_split", "prompt_probs"),
        ("eval", "dataset", "split", None),
    ),
    "openrlhf.cli.train_sft": (
        ("data", "dataset", "dataset_split", "dataset_probs"),
        ("eval", "dataset", "split", None),
    ),
    "openrlhf.cli.train_dpo": (
        ("data", "dataset", "dataset_split", "dataset_probs"),
        ("eval", "dataset", "split", None),
    ),
}
_LOCAL_DATA_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet", ".arrow")
_PYTHON_RE = re.compile(r"^python(\d+(\.\d+)*)?$")
_ASSIGNMENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_MATRIX_RE = re.compile(r"^#\s*recipe-check:\s*([A-Za-z_][A-Za-z0-9_]*)=(.+?)\s*$")
_EXAMPLE_ENV_RE = re.compile(r"^#\s*recipe-check-env:\s*(.+?)\s*$")
# Lines that mention flags without passing them: comments and `setting NAME DEFAULT "doc"` declarations.
_DOC_LINE_PREFIXES = ("#", "setting ")
_NOTE_RE = re.compile(r"^#\s*(recipe|data-kind):\s*(\S+)")


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


# ---------------------------------------------------------------------------------------------
# Recipes, their declared variants, and their DRY_RUN expansion


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
        Path(__file__).resolve().parent.parent / "recipes",
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
    from openrlhf_act.registry import DATA_KINDS, rewards

    q = shlex.quote
    files = " ".join(f"[{q(name)}]={q(spec.entry_file)}" for name, spec in sorted(rewards().items()) if spec.entry_file)
    flags = " ".join(f"[{q(name)}]={q(' '.join(kind.flags))}" for name, kind in DATA_KINDS.items())
    package_dir = Path(__file__).resolve().parent
    return "\n".join(
        [
            f"ACT_VERSION={q(__version__)}",
            f"ACT_PACKAGE_DIR={q(str(package_dir))}",
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
        raise RuntimeError(f"{recipe.path}: LIST_SETTINGS=1 failed: {_last_line(done.stderr)}")
    rows = []
    for line in done.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) == 4 and parts[0] == "setting":
            rows.append((parts[1], parts[2], parts[3]))
    return rows


# ---------------------------------------------------------------------------------------------
# Reading the printed commands


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


@dataclass
class Launch:
    """The OpenRLHF part of a command and what launches it."""

    module: str
    args: list[str]
    launcher: str
    runtime_env: dict[str, Any] | None = None
    problems: list[tuple[str, str]] = field(default_factory=list)  # (text to locate, message)
    world_size: int | None = None  # GPUs a DeepSpeed launcher starts


def split_launch(argv: Sequence[str]) -> Launch | None:
    """Find ``python -m openrlhf.cli.X``, ``deepspeed ... --module openrlhf.cli.X`` or
    ``ray job submit ... -- <either>``, behind optional ``env VAR=value`` words."""
    tokens = list(argv)
    problems: list[tuple[str, str]] = []
    runtime_env: dict[str, Any] | None = None
    launcher = "python"
    while tokens:
        head = Path(tokens[0]).name
        if head == "env" or _ASSIGNMENT_RE.match(tokens[0]):
            tokens = tokens[1:] if head == "env" else tokens
            while tokens and _ASSIGNMENT_RE.match(tokens[0]):
                name, _, value = tokens.pop(0).partition("=")
                if name == "RAY_JOB_CONFIG_JSON_ENV_VAR":
                    runtime_env = _runtime_env_from_job_config(value, problems)
            continue
        if head == "ray" and tokens[1:3] == ["job", "submit"]:
            options, entrypoint = _split_at_double_dash(tokens[3:])
            runtime_env = _runtime_env_from_submit(options, problems)
            problems.extend(_click_check_ray_submit(options, entrypoint))
            launcher, tokens = "ray job submit", entrypoint
            continue
        if head == "deepspeed":
            found = _split_deepspeed(tokens[1:], problems)
            if found is None:
                return None
            module, args, world = found
            name = "deepspeed" if launcher == "python" else f"{launcher} -> deepspeed"
            return Launch(module, args, name, runtime_env, problems, world)
        if _PYTHON_RE.match(head) and "-m" in tokens:
            at = tokens.index("-m")
            if at + 1 >= len(tokens):
                return None
            return Launch(tokens[at + 1], tokens[at + 2 :], launcher, runtime_env, problems)
        return None
    return None


def _split_at_double_dash(tokens: list[str]) -> tuple[list[str], list[str]]:
    if "--" in tokens:
        at = tokens.index("--")
        return tokens[:at], tokens[at + 1 :]
    return tokens, []


def _option_value(options: list[str], name: str) -> str | None:
    for i, token in enumerate(options):
        if token == name and i + 1 < len(options):
            return options[i + 1]
        if token.startswith(name + "="):
            return token.split("=", 1)[1]
    return None


def _runtime_env_from_submit(options: list[str], problems: list[tuple[str, str]]) -> dict[str, Any] | None:
    raw = _option_value(options, "--runtime-env-json")
    env: dict[str, Any] | None = None
    if raw is not None:
        try:
            env = json.loads(raw)
        except json.JSONDecodeError as exc:
            problems.append(
                ("--runtime-env-json", f"--runtime-env-json is not valid JSON: {exc.msg} at char {exc.pos}")
            )
            return None
        if not isinstance(env, dict):
            problems.append(("--runtime-env-json", "--runtime-env-json must be a JSON object"))
            return None
    working_dir = _option_value(options, "--working-dir")
    if working_dir is not None:
        env = dict(env or {})
        env["working_dir"] = working_dir
    return env


def _runtime_env_from_job_config(raw: str, problems: list[tuple[str, str]]) -> dict[str, Any] | None:
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as exc:
        problems.append(("RAY_JOB_CONFIG_JSON_ENV_VAR", f"RAY_JOB_CONFIG_JSON_ENV_VAR is not valid JSON: {exc.msg}"))
        return None
    env = config.get("runtime_env") if isinstance(config, dict) else None
    if not isinstance(env, dict):
        problems.append(("RAY_JOB_CONFIG_JSON_ENV_VAR", "RAY_JOB_CONFIG_JSON_ENV_VAR needs a runtime_env object"))
        return None
    return env


def _click_check_ray_submit(options: list[str], entrypoint: list[str]) -> list[tuple[str, str]]:
    """Ray's own ``ray job submit`` options parser judges the options (when Ray is installed)."""
    if not entrypoint:
        return [("ray job submit", "ray job submit has no entrypoint after --")]
    try:
        import click
        from ray.dashboard.modules.job.cli import submit
    except Exception:  # Ray not installed here: the options stay unchecked
        return []
    try:
        submit.make_context("ray job submit", [*options, "--", *entrypoint])
    except click.exceptions.Exit:
        return []
    except click.ClickException as exc:
        return [("ray job submit", f"ray job submit: {exc.format_message()}")]
    return []


@cache
def _deepspeed_launcher_options() -> dict[str, bool] | None:
    """DeepSpeed launcher option -> takes a value, read statically from its ``parse_args`` source."""
    spec = importlib.util.find_spec("deepspeed")
    if spec is None or not spec.submodule_search_locations:
        return None
    runner = Path(next(iter(spec.submodule_search_locations))) / "launcher" / "runner.py"
    if not runner.is_file():
        return None
    options: dict[str, bool] = {}
    for node in ast.walk(ast.parse(runner.read_text())):
        if isinstance(node, ast.FunctionDef) and node.name == "parse_args":
            for call in ast.walk(node):
                if isinstance(call, ast.Call) and getattr(call.func, "attr", "") == "add_argument":
                    names = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
                    action = next((k.value for k in call.keywords if k.arg == "action"), None)
                    flag_only = isinstance(action, ast.Constant) and action.value in ("store_true", "store_false")
                    options.update({n: not flag_only for n in names if n.startswith("-")})
    return options or None


def _split_deepspeed(tokens: list[str], problems: list[tuple[str, str]]) -> tuple[str, list[str], int | None] | None:
    """(module, its arguments, GPUs the launcher starts) of ``deepspeed [options] --module M args``."""
    options = _deepspeed_launcher_options()
    values: dict[str, str] = {}
    is_module = False
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "--module":
            is_module = True
            i += 1
            continue
        if token.startswith("-"):
            name, has_value, value = token.partition("=")
            if options is not None and name not in options:
                problems.append((name, f"unknown DeepSpeed launcher flag {name}"))
            takes_value = True if options is None else options.get(name, True)
            if takes_value and not has_value and i + 1 < len(tokens):
                value = tokens[i + 1]
                i += 1
            values[name] = value
            i += 1
            continue
        if not is_module:
            return None
        gpus, nodes = values.get("--num_gpus", ""), values.get("--num_nodes", "1")
        world = int(gpus) * int(nodes) if gpus.isdigit() and nodes.isdigit() else None
        return token, tokens[i + 1 :], world
    return None


# ---------------------------------------------------------------------------------------------
# Running OpenRLHF's own argument handling


class _ParseError(Exception):
    """argparse wanted to print an error and exit."""


class _Inert:
    """Stands in for every non-stdlib module the main block imports: any use does nothing."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str) -> _Inert:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Inert(f"{self._name}.{attr}")

    def __call__(self, *args: Any, **kwargs: Any) -> _Inert:
        return _Inert(f"{self._name}()")

    def __repr__(self) -> str:
        return f"<inert {self._name}>"


def openrlhf_root() -> Path | None:
    """The installed ``openrlhf`` package folder, found without importing anything."""
    spec = importlib.util.find_spec("openrlhf")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def installed_openrlhf_version() -> str | None:
    try:
        return metadata.version("openrlhf")
    except metadata.PackageNotFoundError:
        return None


@cache
def _pure_module(name: str) -> types.ModuleType:
    root = openrlhf_root()
    if root is None:
        raise ImportError(name)
    path = root.joinpath(*name.split(".")[1:]).with_suffix(".py")
    spec = importlib.util.spec_from_file_location(f"_openrlhf_act_check.{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class MainRun:
    """What OpenRLHF's main block made of one argument list."""

    argv: list[str]
    unknown: list[str] = field(default_factory=list)
    abbreviated: list[tuple[str, str]] = field(default_factory=list)
    stray: list[tuple[str, str]] = field(default_factory=list)  # (flag, value it takes none of)
    error: str | None = None
    failed_assert: str | None = None
    exception: str | None = None
    printed: list[str] = field(default_factory=list)
    skipped_imports: list[str] = field(default_factory=list)
    options: dict[str, argparse.Action] = field(default_factory=dict, repr=False)
    args: Any = field(default=None, repr=False)


def _is_flag(token: str, parser: argparse.ArgumentParser) -> bool:
    if not token.startswith("-") or token in ("-", "--"):
        return False
    return token.startswith("--") or not parser._negative_number_matcher.match(token)


def _prescan(parser: argparse.ArgumentParser, argv: list[str], run: MainRun) -> list[str]:
    """Record unknown flags (and drop them with their values) so the rest is still judged in one go."""
    options = parser._option_string_actions
    run.options = dict(options)
    kept: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if not _is_flag(token, parser):
            kept.append(token)
            i += 1
            continue
        name, has_value, _ = token.partition("=")
        action = options.get(name)
        if action is None and name.startswith("--"):
            matches = [o for o in options if o.startswith(name)]
            if len(matches) == 1:
                run.abbreviated.append((name, matches[0]))
                action = options[matches[0]]
            elif len(matches) > 1:
                kept.append(token)  # argparse reports the ambiguity
                i += 1
                continue
        i += 1
        if action is None:
            run.unknown.append(name)
            while not has_value and i < len(argv) and not _is_flag(argv[i], parser):
                i += 1
            continue
        kept.append(token)
        if action.nargs == 0 and not has_value and i < len(argv) and not _is_flag(argv[i], parser):
            run.stray.append((name, argv[i]))
            i += 1
    return kept


class OpenRLHFMain:
    """An OpenRLHF CLI module's ``__main__`` block, compiled from the installed source."""

    def __init__(self, module: str):
        root = openrlhf_root()
        if root is None:
            raise LookupError("OpenRLHF is not installed")
        path = root.joinpath(*module.split(".")[1:]).with_suffix(".py")
        if not module.startswith("openrlhf.") or not path.is_file():
            raise LookupError(f"the installed OpenRLHF has no module {module}")
        self.module = module
        self.path = path
        tree = ast.parse(path.read_text(), filename=str(path))
        setup: list[ast.stmt] = []
        main: list[ast.stmt] | None = None
        for node in tree.body:
            if _is_main_guard(node):
                main = node.body
            elif isinstance(
                node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)
            ):
                setup.append(node)
        if main is None:
            raise LookupError(f'{path} has no `if __name__ == "__main__":` block')
        self.setup = [compile(ast.Module(body=[n], type_ignores=[]), str(path), "exec") for n in setup]
        self.main = compile(ast.Module(body=main, type_ignores=[]), str(path), "exec")
        self.driver_env_keys = _ray_init_env_keys(tree)

    def run(self, argv: Sequence[str]) -> MainRun:
        run = MainRun(list(argv))
        namespace: dict[str, Any] = {"__name__": "__openrlhf_act_check__", "__file__": str(self.path)}
        namespace["__builtins__"] = self._builtins(run, namespace)
        for code in self.setup:
            try:
                exec(code, namespace)
            except Exception:  # a definition that needs a real heavy import: the main block rarely does
                continue
        namespace["train"] = lambda args: setattr(run, "args", args)
        namespace["argparse"] = _checking_argparse(run)
        namespace["__name__"] = "__main__"
        try:
            exec(self.main, namespace)
        except _ParseError as exc:
            run.error = str(exc)
        except AssertionError as exc:
            run.failed_assert = str(exc) or f"assert at {self.path.name}:{_error_line(exc, self.path)}"
        except SystemExit as exc:
            run.exception = f"the main block exited ({exc.code})"
        except Exception as exc:
            run.exception = f"{type(exc).__name__}: {exc} ({self.path.name}:{_error_line(exc, self.path)})"
        return run

    def _builtins(self, run: MainRun, namespace: dict[str, Any]) -> dict[str, Any]:
        real_import = builtins.__import__

        def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
            if level == 0 and name.split(".")[0] in sys.stdlib_module_names:
                return real_import(name, globals, locals, fromlist, level)
            if level == 0 and name in _PURE_OPENRLHF_MODULES and fromlist:
                return _pure_module(name)
            if namespace.get("__name__") == "__main__":
                run.skipped_imports.append(name)
            return _Inert(name)

        def recorded_print(*values: Any, sep: str | None = " ", end: str | None = "\n", **_: Any) -> None:
            run.printed.append((sep or " ").join(str(v) for v in values))

        table = dict(vars(builtins))
        table.update(__import__=guarded_import, print=recorded_print, exit=_refuse_exit, quit=_refuse_exit)
        return table


def _refuse_exit(*_: Any) -> None:
    raise SystemExit("exit() called")


def _checking_argparse(run: MainRun) -> types.ModuleType:
    """``argparse`` whose parser reads our argv, records unknown flags, and raises instead of exiting."""

    class CheckingParser(argparse.ArgumentParser):
        def parse_args(self, args=None, namespace=None):
            if args is None:
                args = _prescan(self, run.argv, run)
            return super().parse_args(args, namespace)

        def parse_known_args(self, args=None, namespace=None):
            return super().parse_known_args(run.argv if args is None else args, namespace)

        def error(self, message):
            raise _ParseError(message)

        def _print_message(self, message, file=None):
            return None  # --help / usage text: nothing is printed while checking

        def exit(self, status=0, message=None):
            if status == 0:
                raise _ParseError("--help makes it print its usage and exit without training")
            raise _ParseError((message or "").strip() or f"argparse exited with status {status}")

    module = types.ModuleType("argparse")
    module.__dict__.update(vars(argparse))
    module.ArgumentParser = CheckingParser
    return module


def _is_main_guard(node: ast.stmt) -> bool:
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    parts = [node.test.left, *node.test.comparators]
    names = {p.id for p in parts if isinstance(p, ast.Name)}
    consts = {p.value for p in parts if isinstance(p, ast.Constant)}
    return names == {"__name__"} and consts == {"__main__"}


def _ray_init_env_keys(tree: ast.Module) -> frozenset[str]:
    """Environment variables the module's own ``ray.init(runtime_env={"env_vars": {...}})`` sets:
    Ray refuses a job runtime env that sets any of them again."""
    keys: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "init":
            for keyword in node.keywords:
                if keyword.arg == "runtime_env" and isinstance(keyword.value, ast.Dict):
                    for key, value in zip(keyword.value.keys, keyword.value.values):
                        if isinstance(key, ast.Constant) and key.value == "env_vars" and isinstance(value, ast.Dict):
                            keys.update(k.value for k in value.keys if isinstance(k, ast.Constant))
    return frozenset(keys)


def _error_line(exc: BaseException, path: Path) -> int | str:
    tb = exc.__traceback__
    line: int | str = "?"
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == str(path):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


@cache
def openrlhf_main(module: str) -> OpenRLHFMain:
    return OpenRLHFMain(module)


# ---------------------------------------------------------------------------------------------
# Judging one command


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


def check_command(
    command: Command, launch: Launch, index: SourceIndex, variant: str, environ: dict[str, str], *, check_data: bool
) -> list[Finding]:
    check = CommandCheck(index, command, variant, environ)
    for locate, message in launch.problems:
        check.add("error", message, locate)
    try:
        main = openrlhf_main(launch.module)
    except LookupError as exc:
        check.add("error", str(exc), launch.module)
        return check.findings
    run = main.run(launch.args)
    short = launch.module.rsplit(".", 1)[-1]
    for name in run.unknown:
        check.add("error", f"unknown flag {name} for {short}{_suggest(name, run.options)}", name)
    for given, full in run.abbreviated:
        check.add("warning", f"{given} is an abbreviation of {full}: write the full flag", given)
    for name, value in run.stray:
        check.add("error", f"{name} takes no value, but {value!r} follows it", name)
    if run.error:
        flag = _flag_in_message(run.error)
        check.add("error", f"{short}: {run.error}", flag)
    if run.failed_assert:
        check.add("error", f"{short} refuses these arguments: {run.failed_assert}", launch.module)
    if run.exception:
        check.add("error", f"{short}'s argument handling failed: {run.exception}", launch.module)
    for name in sorted(set(run.skipped_imports)):
        check.add("warning", f"{short}'s main block imports {name}; checks that need it were skipped", launch.module)
    for line in run.printed:
        if line.strip():
            check.add("warning", f"{short} says: {line.strip()}", launch.module)
    if run.args is not None:
        _check_semantics(check, launch, main, run.args)
        _check_data_kind(check, command, launch)
        if check_data:
            _check_datasets(check, launch, run.args)
    return check.findings


def _suggest(name: str, options: dict[str, argparse.Action]) -> str:
    last = name.lstrip("-").rsplit(".", 1)[-1]
    hints = [o for o in _RENAMED.get(last, ()) if o in options]
    hints += [o for o in options if o.rsplit(".", 1)[-1] == last and o != name and o not in hints]
    if not hints:
        hints = difflib.get_close_matches(name, list(options), n=1, cutoff=0.75)
    hint = f"; did you mean {' or '.join(hints[:2])}?" if hints else ""
    if "." not in name:
        hint += " (OpenRLHF >= 0.10.2 spells every flag in dotted form)"
    return hint


def _flag_in_message(message: str) -> str | None:
    match = re.match(r"argument (\S+?)[:/ ]", message)
    return match[1] if match else None


def _get(args: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        args = getattr(args, part, None)
    return args


def _check_semantics(check: CommandCheck, launch: Launch, main: OpenRLHFMain, args: Any) -> None:
    """What OpenRLHF only finds after loading models: files, blends, splits, GPU layout, runtime env."""
    working_dir = (launch.runtime_env or {}).get("working_dir")
    for url in _get(args, "reward.remote_url") or []:
        if url == "agent" or url.startswith(("http://", "https://")):
            continue
        if not url.endswith(".py"):
            check.add("error", f"--reward.remote_url {url}: neither an http(s) URL nor a .py reward file", url)
        elif not _resolve(url, working_dir).is_file():
            check.add("error", f"--reward.remote_url {url}: no such file", "--reward.remote_url")
    agent = _get(args, "train.agent_func_path")
    if agent and not _resolve(agent, working_dir).is_file():
        check.add("error", f"--train.agent_func_path {agent}: no such file", "--train.agent_func_path")
    for section, data_attr, split_attr, probs_attr in _DATASET_ARGS.get(launch.module, ()):
        sources = _get(args, f"{section}.{data_attr}")
        if not sources:
            continue
        names = [s.strip() for s in sources.split(",")]
        split = _get(args, f"{section}.{split_attr}")
        flag = f"--{section}.{split_attr}"
        for name in names:
            if name.lower().endswith(_LOCAL_DATA_SUFFIXES) and split != "train":
                check.add("error", f"{name} is a data file, whose only split is 'train', but {flag} is {split!r}", flag)
        if probs_attr and _get(args, f"{section}.{probs_attr}") is not None:
            _check_probabilities(check, f"--{section}.{probs_attr}", _get(args, f"{section}.{probs_attr}"), names)
    if launch.module == "openrlhf.cli.train_ppo_ray":
        _check_colocation(check, args)
        world = _get(args, "actor.num_nodes") * _get(args, "actor.num_gpus_per_node")
        micro = 1 if _get(args, "train.dynamic_batch_enable") else _get(args, "train.micro_batch_size")
    else:
        world, micro = launch.world_size, _get(args, "train.micro_batch_size")
    if world and micro:
        _check_batch_split(check, args, world, micro)
    _check_runtime_env(check, launch, main)


def _check_batch_split(check: CommandCheck, args: Any, world: int, micro: int) -> None:
    """DeepSpeed's start-up assert (after the model is loaded): the global batch splits exactly into
    micro-batches on every data-parallel GPU, as OpenRLHF's strategy sizes it."""
    parallel = (_get(args, "ds.ring_attn_size") or 1) * (_get(args, "ds.tensor_parallel_size") or 1)
    batch = _get(args, "train.batch_size") * parallel
    if batch < micro * world or batch % (micro * world):
        check.add(
            "error",
            f"--train.batch_size {_get(args, 'train.batch_size')} does not split into micro-batches of {micro} on "
            f"{world} GPU(s) (x{parallel} ring/tensor parallel): DeepSpeed would stop at start-up; use a multiple "
            f"of {micro * world // math.gcd(micro * world, parallel)}",
            "--train.batch_size",
        )


def _resolve(path: str, working_dir: str | None) -> Path:
    candidate = Path(path)
    if not candidate.is_absolute() and working_dir:
        candidate = Path(working_dir) / candidate
    return candidate


def _check_probabilities(check: CommandCheck, flag: str, raw: str, datasets: list[str]) -> None:
    try:
        probs = [float(p) for p in raw.split(",")]
    except ValueError:
        check.add("error", f"{flag} {raw}: not comma-separated numbers", flag)
        return
    if len(probs) != len(datasets):
        check.add("error", f"{flag} has {len(probs)} values for {len(datasets)} datasets", flag)
    elif abs(sum(probs) - 1.0) > 1e-6 or min(probs) < 0:
        check.add("error", f"{flag} {raw}: probabilities must be >= 0 and sum to 1", flag)


def _check_colocation(check: CommandCheck, args: Any) -> None:
    """Two asserts of train_ppo_ray.train() (after Ray starts), checked here before it does."""
    if not _get(args, "train.colocate_all") or _get(args, "train.async_enable"):
        return
    actor = _get(args, "actor.num_nodes") * _get(args, "actor.num_gpus_per_node")
    engines = _get(args, "vllm.num_engines") or 0
    if engines and actor != engines * _get(args, "vllm.tensor_parallel_size"):
        check.add(
            "error",
            f"--train.colocate_all needs actor GPUs ({actor}) = vLLM engines x tensor parallel size "
            f"({engines} x {_get(args, 'vllm.tensor_parallel_size')}) (train_ppo_ray.train asserts this)",
            "--vllm.num_engines",
        )
    ref = (_get(args, "ref.num_nodes"), _get(args, "ref.num_gpus_per_node"))
    if _get(args, "algo.kl.init_coef") > 0 and ref != (
        _get(args, "actor.num_nodes"),
        _get(args, "actor.num_gpus_per_node"),
    ):
        check.add(
            "error", "colocated actor and reference need the same nodes and GPUs per node", "--ref.num_gpus_per_node"
        )


def _check_runtime_env(check: CommandCheck, launch: Launch, main: OpenRLHFMain) -> None:
    from openrlhf_act.rewards.config import config_from_env
    from openrlhf_act.rewards.routing import DEFAULT_ENV

    env = launch.runtime_env
    if env is None:
        return
    where = "--runtime-env-json" if launch.launcher.startswith("ray job") else "RAY_JOB_CONFIG_JSON_ENV_VAR"
    variables = env.get("env_vars") or {}
    if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
        check.add("error", "runtime env env_vars must map names to strings", where)
        return
    clash = sorted(set(variables) & main.driver_env_keys)
    if clash:
        check.add("error", f"{main.module} sets {', '.join(clash)} in its own ray.init(); Ray refuses both", where)
    try:
        config_from_env(variables)
    except ValueError as exc:
        check.add("error", f"reward settings forwarded to Ray are invalid: {exc}", where)
    route = variables.get(DEFAULT_ENV, "").strip()
    if route and not route.startswith(("http://", "https://")) and not Path(route).is_file():
        check.add("error", f"{DEFAULT_ENV}={route}: neither an http(s) URL nor an existing .py reward file", where)
    for key in ("working_dir",):
        value = env.get(key)
        if isinstance(value, str) and "://" not in value and not Path(value).is_dir():
            check.add("error", f"runtime env {key} {value}: no such folder", where)
    for module in env.get("py_modules") or []:
        if isinstance(module, str) and "://" not in module and not Path(module).exists():
            check.add("error", f"runtime env py_modules entry {module}: no such path", where)


def _check_data_kind(check: CommandCheck, command: Command, launch: Launch) -> None:
    """The recipe's `# data-kind:` must match openrlhf_act.registry.DATA_KINDS (module and flags)."""
    if not command.data_kind:
        return
    from openrlhf_act.registry import DATA_KINDS

    kind = DATA_KINDS.get(command.data_kind)
    if kind is None:
        check.add("error", f"data kind {command.data_kind!r} is not in openrlhf_act.registry.DATA_KINDS", launch.module)
        return
    if kind.openrlhf_module != launch.module:
        check.add("error", f"{kind.name} rows are read by {kind.openrlhf_module}, not {launch.module}", launch.module)
    for flag in kind.flags:
        words = flag.split()
        if not _contains(launch.args, words):
            check.add("error", f"{kind.name} rows need `{flag}` (openrlhf_act.registry.DATA_KINDS)", launch.module)


def _contains(args: list[str], words: list[str]) -> bool:
    n = len(words)
    return any(args[i : i + n] == words for i in range(len(args) - n + 1))


def _check_datasets(check: CommandCheck, launch: Launch, args: Any) -> None:
    """--check-data: local dataset files exist, carry the columns the flags name, and blend."""
    keys = _column_flags(launch.module, args)
    for section, data_attr, _, _ in _DATASET_ARGS.get(launch.module, ()):
        flag = f"--{section}.{data_attr}"
        sources = _get(args, f"{section}.{data_attr}")
        if not sources:
            continue
        shapes = []
        for name in (s.strip().split("@")[0] for s in sources.split(",")):
            if not name.lower().endswith(_LOCAL_DATA_SUFFIXES):
                continue
            path = Path(name)
            if not path.is_file():
                check.add("error", f"{flag}: {name}: no such file", flag)
                continue
            row = _first_row(path)
            if row is None:
                continue
            missing = [f"{k} ({col})" for k, col in keys.items() if col not in row]
            if missing:
                check.add("error", f"{name}: first row lacks the column(s) {', '.join(missing)}", flag)
                continue
            shapes.append((name, {col: type(row[col]).__name__ for col in keys.values()}))
        for (first, a), (other, b) in itertools.pairwise(shapes):
            if a != b:
                check.add("error", f"{flag}: {first} and {other} cannot be blended: column types {a} vs {b}", flag)


def _column_flags(module: str, args: Any) -> dict[str, str]:
    if module == "openrlhf.cli.train_dpo":
        names = ("prompt_key", "chosen_key", "rejected_key")
    elif module == "openrlhf.cli.train_sft":
        names = ("input_key",) if _get(args, "data.multiturn") else ("input_key", "output_key")
    else:
        names = ("input_key", "label_key")
    columns = {f"--data.{n}": _get(args, f"data.{n}") for n in names}
    return {flag: col for flag, col in columns.items() if col}


def _first_row(path: Path) -> dict[str, Any] | None:
    if path.suffix.lower() not in (".jsonl", ".json"):
        return None
    with path.open() as handle:
        for line in handle:
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    return None
                return row if isinstance(row, dict) else None
    return None


# ---------------------------------------------------------------------------------------------
# Whole recipes


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
        reason = _last_line(expansion.stderr) or f"exit status {expansion.returncode}"
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
    """Expand every recipe variant and judge every OpenRLHF command; see the module docstring."""
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


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
