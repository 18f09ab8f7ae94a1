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

_PYTHON_RE = re.compile(r"^python(\d+(\.\d+)*)?$")
_ASSIGNMENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


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
