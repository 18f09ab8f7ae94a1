"""Which environment episode a recorded trajectory was played in: from its metadata, its id, or its task text.

ScienceWorld trajectories name a task and a variation: our own ``meta`` (``task_name``, ``variation``),
our task ids (``boil/v3``), ETO's ids (``<task number>_<variation>``, numbers from ETO's
``taskname2id.json``) or ``<task name>_<variation>`` with ETO's long names (``task-1-boil``). Failing
those, the task text is looked up: every task's first description picks the likeliest tasks, whose
variations are then loaded until one's description equals the text (about 0.25 s a variation).
ALFWorld trajectories name a game (ETO's ``game_file``: ``data/json_2.1.1/<split>/<task folder>/<trial>``,
found under ``$ALFWORLD_DATA``), or are found by task text among the games whose folder names the
task's object and receptacle, then checked by loading them. The ScienceWorld simplification is
detected (``teleport`` is only admitted under ``easy``, which ETO plays with) unless given.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from openrlhf_act.envs.base import EnvError, EnvTask
from openrlhf_act.schema import Trajectory

# ETO's task numbers (eval_agent/data/sciworld/taskname2id.json) for ScienceWorld's task names.
ETO_SCIWORLD_TASKS = {
    0: "boil",
    1: "change-the-state-of-matter-of",
    2: "freeze",
    3: "melt",
    4: "measure-melting-point-known-substance",
    6: "use-thermometer",
    7: "power-component",
    8: "power-component-renewable-vs-nonrenewable-energy",
    9: "test-conductivity",
    10: "test-conductivity-of-unknown-substances",
    11: "find-animal",
    12: "find-living-thing",
    13: "find-non-living-thing",
    14: "find-plant",
    15: "grow-fruit",
    16: "grow-plant",
    17: "chemistry-mix",
    18: "chemistry-mix-paint-secondary-color",
    19: "chemistry-mix-paint-tertiary-color",
    20: "lifespan-longest-lived",
    21: "lifespan-longest-lived-then-shortest-lived",
    22: "lifespan-shortest-lived",
    23: "identify-life-stages-1",
    24: "identify-life-stages-2",
    25: "inclined-plane-determine-angle",
    26: "inclined-plane-friction-named-surfaces",
    27: "inclined-plane-friction-unnamed-surfaces",
    28: "mendelian-genetics-known-plant",
    29: "mendelian-genetics-unknown-plant",
}
EASY = "easy"
_SCIWORLD_ID = re.compile(r"^(?P<task>.+?)(?:/v|_)(?P<variation>\d+)$")
_LONG_NAME = re.compile(r"^task-\d+[a-z]?-")
SPLITS_IN_ORDER = ("train", "dev", "test")
MAX_GAMES_CHECKED = 20
# Word overlap (Jaccard) of a text with a task's first description for the task's variations to be
# searched: variations of one task differ in a few words (an object, a place), tasks in most.
MIN_LIKENESS = 0.5


class MatchError(Exception):
    """The trajectory's episode cannot be found; ``reason`` is the manifest's drop reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Match:
    task: EnvTask
    how: str  # meta | id | text


def detect_simplification(trajectories: Iterable[Trajectory]) -> str:
    """``easy`` when any recorded action teleports (admitted only under ``easy``), else none."""
    for trajectory in trajectories:
        if any(step.action.strip().lower().startswith("teleport to ") for step in trajectory.steps):
            return EASY
    return ""


def normalized_text(text: str) -> str:
    """Task texts compared without case, spacing, a "Your task is to:" lead or a final period."""
    text = " ".join(text.lower().split())
    text = re.sub(r"^(task description:\s*)?(your task is to:?\s*)", "", text)
    return text.rstrip(" .")


def sciworld_task_name(raw: str) -> str:
    """ETO's long names (``task-2-power-component-(renewable-vs-nonrenewable-energy)``) -> ours."""
    name = _LONG_NAME.sub("", raw.strip()).replace("(", "").replace(")", "")
    return name.replace("mendellian", "mendelian")


class ScienceWorldMatcher:
    """Matches ScienceWorld trajectories; holds one simulator (started on first need) for splits and texts."""

    def __init__(self, simplification: str = ""):
        self.simplification = simplification
        self._env: Any = None
        self._first_texts: dict[str, str] = {}
        self._texts: dict[tuple[str, int], str] = {}

    @property
    def env(self) -> Any:
        if self._env is None:
            from openrlhf_act.envs.scienceworld import ScienceWorld

            self._env = ScienceWorld(simplification=self.simplification)
        return self._env

    def match(self, trajectory: Trajectory) -> Match:
        meta = trajectory.meta
        if isinstance(meta.get("task_name"), str) and isinstance(meta.get("variation"), int):
            return self._checked(meta["task_name"], meta["variation"], "meta")
        for raw in (trajectory.task_id, meta.get("source_id")):
            found = _SCIWORLD_ID.match(raw) if isinstance(raw, str) else None
            if found:
                head, variation = found["task"], int(found["variation"])
                name = ETO_SCIWORLD_TASKS.get(int(head)) if head.isdigit() else sciworld_task_name(head)
                if name in self.env.task_names:
                    return self._checked(name, variation, "id")
        return self._by_text(trajectory)

    def _checked(self, name: str, variation: int, how: str) -> Match:
        env = self.env
        if name not in env.task_names:
            raise MatchError("unknown_task", f"ScienceWorld has no task {name!r}")
        for split in SPLITS_IN_ORDER:
            if variation in env.variations(name, split):
                return Match(EnvTask("scienceworld", name, variation, split=split), how)
        raise MatchError("unknown_variation", f"ScienceWorld task {name!r} has no variation {variation}")

    def _description(self, name: str, variation: int) -> str:
        key = (name, variation)
        if key not in self._texts:
            self.env.load(EnvTask("scienceworld", name, variation))
            self._texts[key] = normalized_text(self.env.task_description)
        return self._texts[key]

    def _by_text(self, trajectory: Trajectory) -> Match:
        wanted = normalized_text(trajectory.task)
        if not wanted:
            raise MatchError("no_task_text", "the trajectory has no id naming a task and variation, and no task text")
        names = self.env.task_names
        words = set(wanted.split())

        def likeness(name: str) -> float:
            first = set(self._description(name, 0).split())
            return len(words & first) / max(1, len(words | first))

        likely = [name for name in sorted(names, key=likeness, reverse=True)[:2] if likeness(name) >= MIN_LIKENESS]
        for name in likely:
            for split in SPLITS_IN_ORDER:
                for variation in self.env.variations(name, split):
                    if self._description(name, variation) == wanted:
                        return Match(EnvTask("scienceworld", name, variation, split=split), "text")
        raise MatchError("unknown_task_text", f"no ScienceWorld task variation has the task text {trajectory.task!r}")

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None


class ALFWorldMatcher:
    """Matches ALFWorld trajectories to game files in the user's ALFWorld data."""

    def __init__(self, data_dir: str | None = None):
        from openrlhf_act.envs.alfworld import data_dir as alfworld_data

        self.root = alfworld_data(data_dir)
        self._games: list[Path] | None = None
        self._env: Any = None

    def match(self, trajectory: Trajectory) -> Match:
        from openrlhf_act.envs.alfworld import task_type_of

        named = trajectory.meta.get("game_file")
        if isinstance(named, str) and named:
            game = self._resolve(named)
            if game is None:
                raise MatchError("game_not_found", f"ALFWorld game {named!r} is not in {self.root}")
            return Match(EnvTask("alfworld", task_type_of(game), game_file=str(game), split=_split_of(game)), "meta")
        return self._by_text(trajectory)

    def _resolve(self, named: str) -> Path | None:
        path = PurePosixPath(named)
        candidates = [Path(named), self.root / named]
        if "json_2.1.1" in path.parts:
            candidates.append(self.root.joinpath(*path.parts[path.parts.index("json_2.1.1") :]))
        for candidate in candidates:
            game = candidate / "game.tw-pddl" if candidate.suffix != ".tw-pddl" else candidate
            if game.is_file():
                return game.resolve()
        return None

    def _by_text(self, trajectory: Trajectory) -> Match:
        from openrlhf_act.envs.alfworld import ALFWorld, split_observation, task_type_of

        wanted = normalized_text(trajectory.task)
        if not wanted:
            raise MatchError("no_task_text", "the trajectory names no ALFWorld game and has no task text")
        if self._games is None:
            self._games = sorted(self.root.glob("json_2.1.1/*/*/*/game.tw-pddl"))
        candidates = [g for g in self._games if _folder_fits(g.parent.parent.name, wanted)][:MAX_GAMES_CHECKED]
        recorded = normalized_text(split_observation(trajectory.steps[0].observation)[1]) if trajectory.steps else ""
        recorded = recorded.removeprefix("observation:").strip()
        found = []
        if self._env is None and candidates:
            self._env = ALFWorld(expert=None)
        for game in candidates:
            self._env.load(EnvTask("alfworld", task_type_of(game), game_file=str(game)))
            room = normalized_text(self._env.reset().observation)
            if normalized_text(self._env.task_description) == wanted and (not recorded or recorded == room):
                found.append(game)
        if len(found) != 1:
            what = "no ALFWorld game" if not found else f"{len(found)} ALFWorld games"
            raise MatchError(
                "unknown_task_text" if not found else "ambiguous_task_text",
                f"{what} in {self.root} match the task text {trajectory.task!r}; name the game (game_file)",
            )
        game = found[0]
        return Match(EnvTask("alfworld", task_type_of(game), game_file=str(game), split=_split_of(game)), "text")

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None


def _folder_fits(folder: str, text: str) -> bool:
    """``pick_heat_then_place_in_recep-Potato-None-SinkBasin-1`` fits a text naming a potato and a sinkbasin."""
    parts = folder.split("-")
    names = [p.lower() for p in parts[1:4] if p and p != "None"]
    return bool(names) and all(name in text.replace(" ", "") for name in names)


def _split_of(game: Path) -> str | None:
    parts = game.parts
    if "json_2.1.1" in parts:
        index = parts.index("json_2.1.1")
        if index + 1 < len(parts):
            return parts[index + 1]
    return None


def matcher_for(env: str, *, simplification: str = "", data_dir: str | None = None) -> Any:
    """The matcher of ``env``; raises :class:`EnvError` for environments replay does not support."""
    if env == "scienceworld":
        return ScienceWorldMatcher(simplification)
    if env == "alfworld":
        return ALFWorldMatcher(data_dir)
    raise EnvError(f"replay supports scienceworld and alfworld, not {env!r}")
