"""ALFWorld (the official ``alfworld`` package on TextWorld's PDDL engine, offline).

Games come from the user's ALFWorld data directory with its usual layout (``$ALFWORLD_DATA``):
``json_2.1.1/{train,valid_seen,valid_unseen}/<task dir>/<trial>/game.tw-pddl`` next to
``traj_data.json``. The benchmark's 140 seen / 134 unseen evaluation games are what ALFWorld's own
``AlfredTWEnv.collect_game_files`` keeps from ``valid_seen`` / ``valid_unseen``; :func:`list_games`
applies the same filter (a game file exists, is marked solvable, and is not a "movable" or "Sliced"
task), so the counts match on the standard data.

Experts are ALFWorld's own: the PDDL ``planner`` (TextWorld's ``policy_commands``, which is what
``AlfredExpert(PLANNER)`` reports as ``extra.expert_plan``; asked for directly because alfworld 0.4.2's
wrapper also initialises the hand-coded expert, which needs ``traj_data.json``) or the ``handcoded``
expert through ``AlfredExpert(HANDCODED)`` (needs ``traj_data.json`` beside the game).

The first observation is split into the task ("Your task is to: ...") and the room description;
a command ALFWorld does not understand answers "Nothing happens." (``valid=False``).

Snapshots (:meth:`ALFWorld.snapshot`): TextWorld's PDDL engine keeps the episode in fast-downward's C
library, which can report its state but not set it. A snapshot saves the library's value of every
variable (and TextWorld's Python copies of the facts); a restore reloads the translated task with those
values as its initial state, which takes milliseconds where a reset re-translates the PDDL problem
(about 2 s).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from openrlhf_act.envs.base import EnvError, EnvStep, EnvTask, EpisodeQuery, TextEnv

ENV_NAME = "alfworld"
DATA_ENV = "ALFWORLD_DATA"
SPLITS = ("train", "valid_seen", "valid_unseen")
SPLIT_ALIASES = {"seen": "valid_seen", "unseen": "valid_unseen", "eval_in_distribution": "valid_seen"}
TASK_TYPES = (
    "pick_and_place_simple",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place",
)
EXPERTS = ("planner", "handcoded")
GAME_FILE = "game.tw-pddl"
# ALFWorld's own evaluation budget (base_config.yaml: max_nb_steps_per_episode: 50).
DEFAULT_MAX_STEPS = 50
_BANNER = "-= Welcome to TextWorld, ALFRED! =-"
_TASK_PREFIX = "Your task is to:"
_NOTHING = "Nothing happens."
# A game outside ALFWorld's layout (a single file given by path) gets this task name.
CUSTOM_TASK = "game"


@dataclass(frozen=True)
class Game:
    """One playable ALFWorld game: its task type and file."""

    task_type: str
    path: str

    def env_task(self, split: str | None) -> EnvTask:
        return EnvTask(ENV_NAME, self.task_type, game_file=self.path, split=split)


@dataclass(frozen=True)
class PddlSnapshot:
    """One moment of a PDDL episode (see the module docstring); opaque to callers."""

    atoms: tuple[str, ...]  # the value of every SAS variable, as fast-downward names it
    facts: dict[Any, set[Any]]
    vars_by_name: dict[str, Any]
    vars_by_type: dict[str, set[Any]]
    var_counts: Counter[Any]
    game_state: Any
    previous: Any
    moves: int
    last_action: Any
    operators: Any
    score: float


def data_dir(explicit: str | None = None) -> Path:
    """The ALFWorld data directory: the argument, else ``$ALFWORLD_DATA``."""
    root = explicit or os.environ.get(DATA_ENV)
    if not root:
        raise EnvError(f"ALFWorld data not found: set ${DATA_ENV} (the directory holding json_2.1.1/) or pass data_dir")
    path = Path(root).expanduser()
    if not (path / "json_2.1.1").is_dir():
        raise EnvError(f"{path} has no json_2.1.1/ folder: is it ALFWorld's data directory (alfworld-download)?")
    return path


def canonical_split(split: str) -> str:
    split = SPLIT_ALIASES.get(split, split)
    if split not in SPLITS:
        raise EnvError(f"unknown ALFWorld split {split!r}; choose one of {', '.join(SPLITS)} (or seen / unseen)")
    return split


def task_type_of(game_path: str | Path) -> str:
    """The task type from the task folder name (``pick_heat_then_place_in_recep-Potato-...``)."""
    for part in reversed(Path(game_path).parts):
        prefix = part.split("-", 1)[0]
        if prefix in TASK_TYPES:
            return prefix
    return CUSTOM_TASK


def list_games(split: str, root: str | None = None) -> list[Game]:
    """The evaluation games of ``split``, sorted by path, filtered exactly as ALFWorld does."""
    split_dir = data_dir(root) / "json_2.1.1" / canonical_split(split)
    if not split_dir.is_dir():
        raise EnvError(f"ALFWorld split folder {split_dir} does not exist")
    games = []
    for traj in sorted(split_dir.rglob("traj_data.json")):
        folder = traj.parent
        game = folder / GAME_FILE
        if "movable" in str(folder) or "Sliced" in str(folder) or not game.is_file():
            continue
        try:
            task_type = json.loads(traj.read_text()).get("task_type")
            solvable = json.loads(game.read_text()).get("solvable")
        except (OSError, json.JSONDecodeError) as exc:
            raise EnvError(f"unreadable ALFWorld game {folder}: {exc}") from exc
        if task_type in TASK_TYPES and solvable:
            games.append(Game(task_type, str(game)))
    return games


def split_observation(text: str) -> tuple[str, str]:
    """(task, observation) from ALFWorld's first observation: banner, room, "Your task is to: ..."."""
    body = text.replace(_BANNER, "").strip()
    task = ""
    kept = []
    for line in body.splitlines():
        if line.strip().startswith(_TASK_PREFIX):
            task = line.strip()[len(_TASK_PREFIX) :].strip()
        else:
            kept.append(line)
    return task, "\n".join(kept).strip()


class ALFWorld(TextEnv):
    """Adapter over ``textworld.start`` with ALFWorld's wrappers; one game loaded at a time."""

    name = ENV_NAME
    description = "ALFWorld on $ALFWORLD_DATA (6 task types; 140 seen / 134 unseen evaluation games)"
    splits = SPLITS
    eval_splits = ("valid_seen", "valid_unseen")
    expert_options = MappingProxyType({"expert": "planner"})
    plays_game_files = True
    snapshots = True
    packages = ("alfworld", "textworld")

    @classmethod
    def list_tasks(cls, **options: Any) -> list[str]:
        return list(TASK_TYPES)

    @classmethod
    def episodes(cls, query: EpisodeQuery, env: TextEnv | None = None) -> list[EnvTask]:
        """The split's games, or ``games`` (paths; then ``split`` is ignored); ``variations`` do not apply."""
        tasks, episodes = query.tasks, query.episodes
        if tasks:
            unknown = [t for t in tasks if t not in TASK_TYPES]
            if unknown:
                raise EnvError(
                    f"unknown ALFWorld task type(s) {', '.join(unknown)}; choose from {', '.join(TASK_TYPES)}"
                )
        if query.games:
            found = []
            for game in query.games:
                path = Path(game).expanduser()
                path = path / GAME_FILE if path.is_dir() else path
                if not path.is_file():
                    raise EnvError(f"ALFWorld game file {game!r} does not exist")
                found.append(Game(task_type_of(path), str(path.resolve())))
            split_name = None  # games named by path belong to no benchmark split
        else:
            split_name = canonical_split(query.split)
            found = list_games(split_name, query.options.get("data_dir"))
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

    def __init__(self, *, data_dir: str | None = None, expert: str | None = "planner", max_steps: int | None = None):
        if expert is not None and expert not in EXPERTS:
            raise EnvError(f"unknown ALFWorld expert {expert!r}; choose one of {', '.join(EXPERTS)} (or none)")
        try:
            import textworld  # noqa: F401
            from alfworld.agents.environment import alfred_tw_env  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise EnvError("ALFWorld is not installed: pip install 'openrlhf-act[envs]'") from exc
        self._data_dir = data_dir
        self._expert = expert
        self.max_steps = max_steps or DEFAULT_MAX_STEPS
        self._env: Any = None
        self._task: EnvTask | None = None
        self._description = ""
        self._score = 0.0
        self._sas_values: tuple[Any, list[dict[str, int]]] | None = None  # (PDDL state, its variables' values)

    def resolve_game(self, game: str) -> str:
        """An absolute game path: as given, or relative to the ALFWorld data directory."""
        path = Path(game).expanduser()
        candidates = [path]
        if not path.is_absolute():
            with contextlib.suppress(EnvError):  # no data directory: only the working directory is searched
                candidates.append(data_dir(self._data_dir) / path)
        for candidate in candidates:
            candidate = candidate / GAME_FILE if candidate.is_dir() else candidate
            if candidate.is_file():
                return str(candidate.resolve())
        where = "" if path.is_absolute() else f" (looked in the working directory and ${DATA_ENV})"
        raise EnvError(f"ALFWorld game file {game!r} does not exist{where}")

    def load(self, task: EnvTask) -> None:
        if not task.game_file:
            raise EnvError("an ALFWorld task needs a game file (EnvTask.game_file)")
        path = self.resolve_game(task.game_file)
        if self._expert == "handcoded" and not (Path(path).parent / "traj_data.json").is_file():
            raise EnvError(f"the handcoded ALFWorld expert needs traj_data.json beside {path}; use expert='planner'")
        self._close_game()
        try:
            self._env = self._start(path)
        except Exception as exc:
            raise EnvError(f"ALFWorld could not load {path}: {type(exc).__name__}: {exc}") from exc
        self._task = task

    def _start(self, path: str) -> Any:
        import textworld
        from alfworld.agents.environment.alfred_tw_env import (
            AlfredDemangler,
            AlfredExpert,
            AlfredExpertType,
            AlfredInfos,
        )

        infos = textworld.EnvInfos(
            won=True, admissible_commands=True, policy_commands=self._expert == "planner", extras=["gamefile"]
        )
        wrappers: list[Any] = [AlfredDemangler(), AlfredInfos]
        if self._expert == "handcoded":
            infos.extras.append("expert_plan")
            wrappers.append(AlfredExpert(AlfredExpertType.HANDCODED))
        return textworld.start(path, request_infos=infos, wrappers=wrappers)

    @property
    def task_description(self) -> str:
        return self._description

    def reset(self) -> EnvStep:
        if self._env is None:
            raise EnvError("ALFWorld: reset() before load()")
        state = self._call(self._env.reset)
        self._description, observation = split_observation(str(state["feedback"]))
        self._score = 0.0
        return self._to_step(observation, state, done=False, valid=True)

    def step(self, action: str) -> EnvStep:
        if self._env is None:
            raise EnvError("ALFWorld: step() before load()")
        state, _, done = self._call(self._env.step, action)
        observation = str(state["feedback"]).strip()
        return self._to_step(observation, state, done=bool(done), valid=observation != _NOTHING)

    def _to_step(self, observation: str, state: Any, *, done: bool, valid: bool) -> EnvStep:
        won = bool(state.get("won"))
        score = 1.0 if won else 0.0
        reward, self._score = score - self._score, score
        return EnvStep(
            observation=observation,
            reward=reward,
            score=score,
            done=done or won,
            won=won,
            admissible=tuple(str(a) for a in state.get("admissible_commands") or ()) or None,
            valid=valid,
            info={"gamefile": state.get("extra.gamefile")},
            expert=self._expert_next(state),
        )

    def _expert_next(self, state: Any) -> str | None:
        if self._expert == "planner":
            plan = state.get("policy_commands") or []
        elif self._expert == "handcoded":
            plan = state.get("extra.expert_plan") or []
        else:
            return None
        return str(plan[0]) if plan else None

    def snapshot(self) -> PddlSnapshot:
        if self._env is None:
            raise EnvError("ALFWorld: snapshot() before load()")
        if self._expert == "handcoded":
            raise EnvError("the handcoded ALFWorld expert keeps its own state: snapshots need expert='planner' or None")
        return self._call(self._save)

    def restore(self, snapshot: Any) -> None:
        if self._env is None or not isinstance(snapshot, PddlSnapshot):
            raise EnvError("ALFWorld: restore() needs a snapshot of the loaded game")
        self._call(self._load, snapshot)

    def _save(self) -> PddlSnapshot:
        import fast_downward

        pddl = self._env.unwrapped
        state = pddl._pddl_state
        atoms = (fast_downward.Atom * state.downward_lib.get_state_size())()
        state.downward_lib.get_state(atoms)
        return PddlSnapshot(
            atoms=tuple(atom.name for atom in atoms),
            facts={k: set(v) for k, v in state._facts.items()},
            vars_by_name=dict(state._vars_by_name),
            vars_by_type={k: set(v) for k, v in state._vars_by_type.items()},
            var_counts=Counter(state._var_counts),
            game_state=pddl.state,
            previous=pddl.prev_state,
            moves=pddl._moves,
            last_action=pddl._last_action,
            operators=state._operators,
            score=self._score,
        )

    def _load(self, snapshot: PddlSnapshot) -> None:
        pddl = self._env.unwrapped
        state = pddl._pddl_state
        if self._sas_values is None or self._sas_values[0] is not state:
            self._sas_values = (state, sas_variable_values(state.sas))
        values = self._sas_values[1]
        initial = [values[i][atom] for i, atom in enumerate(snapshot.atoms)]
        state.downward_lib.load_sas(with_initial_state(state.sas, initial).encode("utf-8"))
        state._facts = defaultdict(set, {k: set(v) for k, v in snapshot.facts.items()})
        state._vars_by_name = dict(snapshot.vars_by_name)
        state._vars_by_type = defaultdict(set, {k: set(v) for k, v in snapshot.vars_by_type.items()})
        state._var_counts = Counter(snapshot.var_counts)
        state._operators = snapshot.operators
        pddl.state, pddl.prev_state = snapshot.game_state, snapshot.previous
        pddl._moves, pddl._last_action = snapshot.moves, snapshot.last_action
        self._score = snapshot.score

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except Exception as exc:
            raise EnvError(f"ALFWorld failed: {type(exc).__name__}: {exc}") from exc

    def _close_game(self) -> None:
        env, self._env = self._env, None
        if env is not None:
            with contextlib.suppress(Exception):  # a broken game must not stop the next one from loading
                env.close()

    def close(self) -> None:
        self._close_game()


def sas_variable_values(sas: str) -> list[dict[str, int]]:
    """For each variable of a fast-downward SAS task, its value names -> value index."""
    lines = sas.split("\n")
    out: list[dict[str, int]] = []
    i = 0
    while i < len(lines):
        if lines[i] == "begin_variable":  # name, axiom layer, value count, the values
            count = int(lines[i + 3])
            out.append({value: j for j, value in enumerate(lines[i + 4 : i + 4 + count])})
            i += 4 + count
        else:
            i += 1
    return out


def with_initial_state(sas: str, values: list[int]) -> str:
    """The SAS task with ``values`` as its initial state."""
    head, rest = sas.split("begin_state\n", 1)
    _, tail = rest.split("end_state", 1)
    return head + "begin_state\n" + "\n".join(map(str, values)) + "\nend_state" + tail
