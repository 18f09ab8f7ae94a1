"""The one interface every environment adapter implements, and how tasks are named.

An adapter owns one simulator instance (a JVM for ScienceWorld, a TextWorld engine for ALFWorld, an
HTTP session for WebShop). ``load(task)`` selects an episode, ``reset()`` starts it, ``step(action)``
advances it. Adapters are context managers and ``close()`` is idempotent: every simulator is shut
down, also on errors and Ctrl-C. What an environment offers before any simulator starts (its splits,
tasks and episodes, its expert) is on the class, so the registry asks the adapter instead of branching
on its name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar


class EnvError(RuntimeError):
    """An environment could not do what was asked (unknown task, bad variation, crashed process)."""


@dataclass(frozen=True)
class EnvTask:
    """One episode to play: environment, task name, and the variation or game that instantiates it."""

    env: str
    name: str
    variation: int | None = None
    game_file: str | None = None
    split: str | None = None

    @property
    def task_id(self) -> str:
        """Stable id used for data splits: ``name/v<variation>`` or ``name/<game file stem>``."""
        if self.variation is not None:
            return f"{self.name}/v{self.variation}"
        if self.game_file:
            from pathlib import Path

            path = Path(self.game_file)
            stem = path.parent.name if path.name in {"game.tw-pddl", "traj_data.json"} else path.stem
            return f"{self.name}/{stem}"
        return self.name


@dataclass(frozen=True)
class EnvStep:
    """What the agent sees after ``reset()`` or ``step()``.

    ``score`` is cumulative on the environment's own scale (ScienceWorld 0-100, success 0/1
    elsewhere, see :attr:`TextEnv.score_scale`); ``reward`` is this step's change. ``valid`` is False
    when the environment rejected the command (it did nothing). ``expert`` is the expert's next action
    from this state when the adapter has an expert (ScienceWorld's gold path, ALFWorld's planner).
    """

    observation: str
    reward: float
    score: float
    done: bool
    won: bool
    admissible: tuple[str, ...] | None = None
    valid: bool = True
    info: dict[str, Any] = field(default_factory=dict)
    expert: str | None = None


@dataclass(frozen=True)
class EpisodeQuery:
    """Which episodes to play, as the user named them (:func:`openrlhf_act.envs.registry.resolve_episodes`):
    per task (all when none are named), the given variations or the split's first ``episodes`` ones."""

    split: str
    tasks: tuple[str, ...] = ()
    episodes: int | None = None
    variations: tuple[int, ...] = ()
    games: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)


def normalized_score(score: float, score_scale: float) -> float:
    """``score`` on a 0..1 scale (negative failure scores count as 0): what eval and online RL report."""
    return min(1.0, max(0.0, score / score_scale))


class TextEnv(ABC):
    """reset / step / admissible actions / score / done / close."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    splits: ClassVar[tuple[str, ...]] = ()
    eval_splits: ClassVar[tuple[str, ...]] = ()
    # Options that make the adapter report the expert's next action (``EnvStep.expert``); None: no expert.
    expert_options: ClassVar[Mapping[str, Any] | None] = None
    # Episodes are game files (named by path) rather than task variations.
    plays_game_files: ClassVar[bool] = False
    # The score of a perfect episode: see :func:`normalized_score`.
    score_scale: ClassVar[float] = 1.0
    # The adapter can save and restore its running episode (:meth:`snapshot`, :meth:`restore`).
    snapshots: ClassVar[bool] = False
    # The installed distributions whose versions decide what an episode shows (:meth:`versions`).
    packages: ClassVar[tuple[str, ...]] = ()
    max_steps: int = 100

    @classmethod
    @abstractmethod
    def list_tasks(cls, **options: Any) -> list[str]:
        """The environment's task names."""

    @classmethod
    @abstractmethod
    def episodes(cls, query: EpisodeQuery, env: TextEnv | None = None) -> list[EnvTask]:
        """The episodes ``query`` names; raises :class:`EnvError` for anything that does not exist.
        ``env``: a running adapter to ask."""

    @classmethod  # noqa: B027 - optional hook: local simulators need none
    def preflight(cls, **options: Any) -> None:
        """Raise :class:`EnvError` now if a service the adapter needs cannot be reached."""

    @classmethod
    def rejected_command(cls, command: str) -> str | None:
        """Why the simulator's parser is known to reject ``command`` although its admissible lists may offer
        it (a pattern name), or ``None``: lets samplers and verification skip non-actions unplayed."""
        return None

    @classmethod
    def versions(cls) -> dict[str, str | None]:
        """The installed version of each of :attr:`packages` (None: not installed): an episode's transcript is a
        function of these, the episode and the policy's outputs, so run records and manifests keep them."""
        from importlib import metadata

        found: dict[str, str | None] = {}
        for package in cls.packages:
            try:
                found[package] = metadata.version(package)
            except metadata.PackageNotFoundError:
                found[package] = None
        return found

    @classmethod
    def worker_options(cls, options: Mapping[str, Any], workers: int) -> dict[str, Any]:
        """The options each of ``workers`` simulators running side by side (an environment pool) starts with:
        ``options`` plus defaults that depend on how many share the machine. Options given explicitly win."""
        return dict(options)

    @abstractmethod
    def load(self, task: EnvTask) -> None:
        """Select the episode ``task``; raises :class:`EnvError` for unknown tasks or variations."""

    @property
    @abstractmethod
    def task_description(self) -> str:
        """The natural-language task of the loaded episode."""

    @abstractmethod
    def reset(self) -> EnvStep:
        """Start the loaded episode and return the first observation."""

    @abstractmethod
    def step(self, action: str) -> EnvStep:
        """Execute one command."""

    def expert_actions(self) -> list[str] | None:
        """The expert's action sequence for the loaded episode, when the environment has one."""
        return None

    def snapshot(self) -> Any:
        """An opaque copy of the running episode's state for :meth:`restore`: trying an action and
        coming back costs a restore instead of a reset plus a replay of every earlier action."""
        raise EnvError(f"{self.name} cannot snapshot its state")

    def restore(self, snapshot: Any) -> None:
        """Put the running episode back into the state ``snapshot`` (taken in this episode) holds."""
        raise EnvError(f"{self.name} cannot restore a snapshot")

    @property
    def child_pids(self) -> tuple[int, ...]:
        """Helper processes this adapter started (a JVM), so a supervisor can kill a hung simulator."""
        return ()

    def close(self) -> None:  # noqa: B027 - optional hook: adapters without resources need nothing here
        """Release the simulator; safe to call twice."""

    def __enter__(self) -> TextEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
