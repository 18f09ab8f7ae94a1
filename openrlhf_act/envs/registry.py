"""Environments by name: ``make_env(name, **options)``, their tasks and splits, and episode lists.

Evaluation and the online RL executor name environments and tasks as users type them; this module
turns those names into :class:`EnvTask` lists and checks them *before* anything starts, so an unknown
task, split, variation or game is one clear :class:`EnvError` instead of a failure mid-run.
Adapters are imported lazily: listing names needs no simulator package.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openrlhf_act.envs.base import EnvError, EnvTask, TextEnv


@dataclass(frozen=True)
class EnvSpec:
    """What evaluation needs to know about an environment without starting it."""

    name: str
    splits: tuple[str, ...]
    eval_splits: tuple[str, ...]
    expert_options: dict[str, Any] | None
    description: str


ENVS: dict[str, EnvSpec] = {
    spec.name: spec
    for spec in (
        EnvSpec(
            "scienceworld",
            ("train", "dev", "test"),
            ("test",),
            {"gold_path": True},
            "ScienceWorld (30 tasks; variation splits train / dev / test; score 0-100)",
        ),
        EnvSpec(
            "alfworld",
            ("train", "valid_seen", "valid_unseen"),
            ("valid_seen", "valid_unseen"),
            {"expert": "planner"},
            "ALFWorld on $ALFWORLD_DATA (6 task types; 140 seen / 134 unseen evaluation games)",
        ),
        EnvSpec(
            "webshop",
            ("train", "dev", "test"),
            ("test",),
            None,
            "WebShop through an AgentGym WebShop server (test split: goals 0-499)",
        ),
    )
}


def env_spec(name: str) -> EnvSpec:
    if name not in ENVS:
        raise EnvError(f"unknown environment {name!r}; choose one of {', '.join(ENVS)}")
    return ENVS[name]


def _adapter_class(name: str) -> type[TextEnv]:
    env_spec(name)
    if name == "scienceworld":
        from openrlhf_act.envs.scienceworld import ScienceWorld

        return ScienceWorld
    if name == "alfworld":
        from openrlhf_act.envs.alfworld import ALFWorld

        return ALFWorld
    from openrlhf_act.envs.webshop import WebShop

    return WebShop


def env_options(name: str) -> tuple[str, ...]:
    """The keyword options ``make_env(name, ...)`` accepts."""
    params = inspect.signature(_adapter_class(name).__init__).parameters
    return tuple(p for p in params if p != "self")


def check_options(name: str, options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - set(env_options(name)))
    if unknown:
        takes = ", ".join(env_options(name))
        raise EnvError(f"environment {name!r} takes no option(s) {', '.join(unknown)}; it takes: {takes}")


def make_env(name: str, **options: Any) -> TextEnv:
    """A started adapter for ``name`` (``scienceworld``, ``alfworld``, ``webshop``)."""
    check_options(name, options)
    return _adapter_class(name)(**options)


def preflight(name: str, options: dict[str, Any]) -> None:
    """Fail now, with the adapter's own message, if a remote environment service cannot be reached
    (local simulators were already checked by :func:`resolve_episodes`)."""
    check_options(name, options)
    if name == "webshop":
        from openrlhf_act.envs.webshop import check_service

        check_service(options.get("url"), options.get("timeout", 30.0))


def expert_options(name: str) -> dict[str, Any]:
    """Options that make the adapter report the expert's next action (``EnvStep.expert``)."""
    options = env_spec(name).expert_options
    if options is None:
        raise EnvError(f"{name} has no expert to replay: the expert policy works on {_with_expert()}")
    return dict(options)


def _with_expert() -> str:
    return ", ".join(n for n, s in ENVS.items() if s.expert_options is not None)


def list_tasks(name: str, **options: Any) -> list[str]:
    """Task names of ``name``; ScienceWorld asks its simulator (starts a JVM for a second)."""
    env_spec(name)
    if name == "alfworld":
        from openrlhf_act.envs.alfworld import TASK_TYPES

        return list(TASK_TYPES)
    if name == "webshop":
        from openrlhf_act.envs.webshop import TASK_NAME

        return [TASK_NAME]
    with make_env(name, **options) as env:
        return list(env.task_names)  # type: ignore[attr-defined]


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
    spec = env_spec(name)
    options = dict(options or {})
    if episodes is not None and episodes < 1:
        raise EnvError(f"episodes per task must be >= 1, got {episodes}")
    if name == "alfworld":
        return _alfworld_episodes(split, tasks, episodes, games, options)
    if games:
        raise EnvError(f"{name} has no game files; use variations")
    if name == "webshop":
        return _webshop_episodes(split, tasks, episodes, variations)
    if split not in spec.splits:
        raise EnvError(f"unknown {name} split {split!r}; choose one of {', '.join(spec.splits)}")
    own = env is None
    if own:
        options.pop("gold_path", None)
        env = make_env(name, **options)
    try:
        known = list(env.task_names)  # type: ignore[attr-defined]
        chosen = list(tasks) if tasks else known
        out = []
        for task in chosen:
            in_split = env.variations(task, split)  # type: ignore[attr-defined]  (raises for unknown tasks)
            if variations:
                missing = [v for v in variations if v not in in_split]
                if missing:
                    raise EnvError(
                        f"variation(s) {', '.join(map(str, missing))} of {task!r} are not in the {split!r} split "
                        f"({len(in_split)} variations, e.g. {', '.join(map(str, in_split[:5]))})"
                    )
                picked = list(variations)
            else:
                picked = in_split[:episodes] if episodes else in_split
            out += [EnvTask(name, task, variation=v, split=split) for v in picked]
        return out
    finally:
        if own:
            env.close()


def _alfworld_episodes(split, tasks, episodes, games, options) -> list[EnvTask]:
    from openrlhf_act.envs.alfworld import TASK_TYPES, Game, canonical_split, list_games, task_type_of

    if tasks:
        unknown = [t for t in tasks if t not in TASK_TYPES]
        if unknown:
            raise EnvError(f"unknown ALFWorld task type(s) {', '.join(unknown)}; choose from {', '.join(TASK_TYPES)}")
    if games:
        found = []
        for game in games:
            path = Path(game).expanduser()
            path = path / "game.tw-pddl" if path.is_dir() else path
            if not path.is_file():
                raise EnvError(f"ALFWorld game file {game!r} does not exist")
            found.append(Game(task_type_of(path), str(path.resolve())))
        split_name = None  # games named by path belong to no benchmark split
    else:
        split_name = canonical_split(split)
        found = list_games(split_name, options.get("data_dir"))
        if not found:
            raise EnvError(f"no playable ALFWorld games in the {split_name!r} split")
    out: list[EnvTask] = []
    counts: dict[str, int] = {}
    for game in found:
        if tasks and game.task_type not in tasks:
            continue
        counts[game.task_type] = counts.get(game.task_type, 0) + 1
        if episodes is None or counts[game.task_type] <= episodes:
            out.append(game.env_task(split_name))
    return out


def _webshop_episodes(split, tasks, episodes, variations) -> list[EnvTask]:
    from openrlhf_act.envs.webshop import TASK_NAME, check_goal, goals

    if tasks and list(tasks) != [TASK_NAME]:
        raise EnvError(f"WebShop has one task, {TASK_NAME!r}; its episodes are goals (variations)")
    picked = [check_goal(v, split) for v in variations] if variations else list(goals(split))
    if episodes and not variations:
        picked = picked[:episodes]
    return [EnvTask("webshop", TASK_NAME, variation=v, split=split) for v in picked]
