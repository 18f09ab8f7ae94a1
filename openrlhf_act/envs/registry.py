"""Environments by name: ``register(name, "module:Class")``, ``make_env(name, **options)``, episode lists.

Evaluation and the online RL executor name environments and tasks as users type them; this module
turns those names into :class:`EnvTask` lists and checks them *before* anything starts, so an unknown
task, split, variation or game is one clear :class:`EnvError` instead of a failure mid-run. An
environment is registered by the import path of its adapter class and imported only when used (as in
SkyRL-gym); everything environment-specific is asked of the adapter class (:class:`TextEnv`).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from openrlhf_act.envs.base import EnvError, EnvTask, EpisodeQuery, TextEnv

# Registered environments: name -> entry point ("package.module:AdapterClass").
ENVS: dict[str, str] = {}


def register(name: str, entry_point: str) -> None:
    """Make ``make_env(name)`` build the adapter class ``entry_point`` names (imported on first use)."""
    if entry_point.count(":") != 1:
        raise EnvError(f"environment entry point {entry_point!r} is not of the form 'package.module:Class'")
    if ENVS.get(name, entry_point) != entry_point:
        raise EnvError(f"environment {name!r} is already registered as {ENVS[name]}")
    ENVS[name] = entry_point


register("scienceworld", "openrlhf_act.envs.scienceworld:ScienceWorld")
register("alfworld", "openrlhf_act.envs.alfworld:ALFWorld")
register("webshop", "openrlhf_act.envs.webshop:WebShop")


def env_class(name: str) -> type[TextEnv]:
    """The adapter class of ``name``, its module imported now (heavy simulator packages load when it starts)."""
    if name not in ENVS:
        raise EnvError(f"unknown environment {name!r}; choose one of {', '.join(ENVS)}")
    module, _, attribute = ENVS[name].partition(":")
    adapter = getattr(importlib.import_module(module), attribute, None)
    if not (isinstance(adapter, type) and issubclass(adapter, TextEnv)) or adapter.name != name:
        raise EnvError(f"{ENVS[name]} is not a TextEnv adapter named {name!r}")
    return adapter


def env_options(name: str) -> tuple[str, ...]:
    """The keyword options ``make_env(name, ...)`` accepts."""
    params = inspect.signature(env_class(name).__init__).parameters
    return tuple(p for p in params if p != "self")


def check_options(name: str, options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - set(env_options(name)))
    if unknown:
        takes = ", ".join(env_options(name))
        raise EnvError(f"environment {name!r} takes no option(s) {', '.join(unknown)}; it takes: {takes}")


def make_env(name: str, **options: Any) -> TextEnv:
    """A started adapter for ``name`` (``scienceworld``, ``alfworld``, ``webshop``, or one registered)."""
    check_options(name, options)
    return env_class(name)(**options)


def preflight(name: str, options: dict[str, Any]) -> None:
    """Fail now, with the adapter's own message, if a remote environment service cannot be reached
    (local simulators were already checked by :func:`resolve_episodes`)."""
    check_options(name, options)
    env_class(name).preflight(**options)


def expert_options(name: str) -> dict[str, Any]:
    """Options that make the adapter report the expert's next action (``EnvStep.expert``)."""
    options = env_class(name).expert_options
    if options is None:
        with_expert = ", ".join(n for n in ENVS if env_class(n).expert_options is not None)
        raise EnvError(f"{name} has no expert to replay: the expert policy works on {with_expert}")
    return dict(options)


def env_versions(name: str) -> dict[str, str | None]:
    """The versions of environment ``name`` as installed here (its packages; ScienceWorld: and Java's), which
    run records and data manifests keep beside the episodes they played."""
    return env_class(name).versions()


def list_tasks(name: str, **options: Any) -> list[str]:
    """Task names of ``name``; ScienceWorld asks its simulator (starts a JVM for a second)."""
    check_options(name, options)
    return env_class(name).list_tasks(**options)


def episode_key(task: EnvTask) -> str:
    """A unique, stable id for one evaluation episode: ``env:split:task_id`` (ALFWorld: game folder)."""
    ident = task.task_id
    if task.game_file:
        path = Path(task.game_file)
        ident = f"{task.name}/{path.parent.parent.name}/{path.parent.name}"
    return f"{task.env}:{task.split or '-'}:{ident}"


def resolve_episodes(
    name: str,
    *,
    split: str,
    tasks: Sequence[str] | None = None,
    episodes: int | None = None,
    variations: Sequence[int] | None = None,
    games: Sequence[str] | None = None,
    env: TextEnv | None = None,
    options: dict[str, Any] | None = None,
) -> list[EnvTask]:
    """The episodes to play in ``split``: per task, the given variations (goals) or the split's
    first ``episodes`` ones (all when ``None``). ALFWorld plays the split's games, or ``games``
    (paths, then ``split`` is ignored) when given. Raises :class:`EnvError` for anything that does not exist.
    """
    adapter = env_class(name)
    options = dict(options or {})
    check_options(name, options)
    if episodes is not None and episodes < 1:
        raise EnvError(f"episodes per task must be >= 1, got {episodes}")
    if games and not adapter.plays_game_files:
        raise EnvError(f"{name} has no game files; use variations")
    query = EpisodeQuery(split, tuple(tasks or ()), episodes, tuple(variations or ()), tuple(games or ()), options)
    return adapter.episodes(query, env)
