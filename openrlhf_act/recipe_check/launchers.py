"""The OpenRLHF part of a command line and what launches it (``python -m``, ``deepspeed --module``,
``ray job submit ... --``), with the launcher options judged by Ray's and DeepSpeed's own parsers."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from openrlhf_act.recipe_check.dry_run import assignment, option

_PYTHON_RE = re.compile(r"^python(\d+(\.\d+)*)?$")


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
        if head == "env" or assignment(tokens[0]):
            tokens = tokens[1:] if head == "env" else tokens
            while tokens and (pair := assignment(tokens[0])):
                tokens.pop(0)
                if pair[0] == "RAY_JOB_CONFIG_JSON_ENV_VAR":
                    runtime_env = _runtime_env_from_job_config(pair[1], problems)
            continue
        if head == "ray" and tokens[1:3] == ["job", "submit"]:
            rest = tokens[3:]
            at = rest.index("--") if "--" in rest else len(rest)
            options, entrypoint = rest[:at], rest[at + 1 :]
            runtime_env = _runtime_env_from_submit(options, problems)
            problems.extend(_click_check_ray_submit(options, entrypoint))
            launcher, tokens = "ray job submit", entrypoint
            continue
        if head == "deepspeed":
            found = _split_deepspeed(tokens[1:], problems)
            if found is None:
                return None
            name = "deepspeed" if launcher == "python" else f"{launcher} -> deepspeed"
            return Launch(found[0], found[1], name, runtime_env, problems, found[2])
        if _PYTHON_RE.match(head) and "-m" in tokens[:-1]:
            at = tokens.index("-m")
            return Launch(tokens[at + 1], tokens[at + 2 :], launcher, runtime_env, problems)
        return None
    return None


def _json_object(raw: str, where: str, problems: list[tuple[str, str]]) -> dict[str, Any] | None:
    """JSON text as an object, or None with a problem at ``where``."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        problems.append((where, f"{where} is not valid JSON: {exc.msg} at char {exc.pos}"))
        return None
    if not isinstance(value, dict):
        problems.append((where, f"{where} must be a JSON object"))
        return None
    return value


def _option_values(options: list[str]) -> dict[str, str]:
    """``--name value`` and ``--name=value`` options (every ``ray job submit`` option we read takes one)."""
    values: dict[str, str] = {}
    for i, token in enumerate(options):
        name, value = option(token)
        if value is None and i + 1 < len(options):
            value = options[i + 1]
        if name.startswith("--") and value is not None:
            values.setdefault(name, value)
    return values


def _runtime_env_from_job_config(raw: str, problems: list[tuple[str, str]]) -> dict[str, Any] | None:
    """The runtime env of ``RAY_JOB_CONFIG_JSON_ENV_VAR`` (what `ray job submit` gives its entrypoint)."""
    config = _json_object(raw, "RAY_JOB_CONFIG_JSON_ENV_VAR", problems)
    env = config.get("runtime_env") if config is not None else None
    if config is not None and not isinstance(env, dict):
        problems.append(("RAY_JOB_CONFIG_JSON_ENV_VAR", "RAY_JOB_CONFIG_JSON_ENV_VAR needs a runtime_env object"))
        return None
    return env


def _runtime_env_from_submit(options: list[str], problems: list[tuple[str, str]]) -> dict[str, Any] | None:
    values = _option_values(options)
    env = None
    if "--runtime-env-json" in values:
        env = _json_object(values["--runtime-env-json"], "--runtime-env-json", problems)
    if "--working-dir" in values:
        env = {**(env or {}), "working_dir": values["--working-dir"]}
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
    """DeepSpeed launcher option -> takes a value, read statically from its ``parse_args`` source
    (importing DeepSpeed would import torch)."""
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
    known = _deepspeed_launcher_options()
    values: dict[str, str | None] = {}
    i = 0
    while i < len(tokens) and tokens[i].startswith("-"):
        name, value = option(tokens[i])
        if known is not None and name not in known:
            problems.append((name, f"unknown DeepSpeed launcher flag {name}"))
        takes_value = name != "--module" and (known is None or known.get(name, True))
        if value is None and takes_value and i + 1 < len(tokens):
            i += 1
            value = tokens[i]
        values[name] = value
        i += 1
    if "--module" not in values or i >= len(tokens):
        return None
    gpus, nodes = values.get("--num_gpus") or "", values.get("--num_nodes") or "1"
    world = int(gpus) * int(nodes) if gpus.isdigit() and nodes.isdigit() else None
    return tokens[i], tokens[i + 1 :], world
