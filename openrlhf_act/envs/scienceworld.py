"""ScienceWorld (the official ``scienceworld`` package: a Scala simulator behind py4j, offline).

One adapter owns one JVM and reuses it across episodes (``load`` is cheap, JVM start is ~1 s).
Variation splits follow the benchmark: ``train`` variations for training data, ``dev`` for model
selection, ``test`` for the unseen evaluation. Step limits per task are about twice the length of
the gold path (measured at variation 0), at least 30. With ``gold_path=True`` every step carries the
gold path's next action (``EnvStep.expert``), which is right while the episode follows that path.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from openrlhf_act.envs.base import EnvError, EnvStep, EnvTask, EpisodeQuery, TextEnv

logger = logging.getLogger(__name__)
# py4j logs the JVM's expected shutdown errors, with tracebacks, at INFO: keep them out of user logs.
logging.getLogger("py4j").setLevel(logging.WARNING)

ENV_NAME = "scienceworld"
SPLITS = ("train", "dev", "test")
INVALID_MARKERS = ("No known action matches that input.", "Unknown action.")
# Commands ScienceWorld's admissible lists offer and its parser rejects ("No known action matches that
# input."), by pattern: objects in a closed cupboard ("... in cupboard") and a drawer named with no place
# (the one in that cupboard; "drawer in counter" is in reach: 42 of 42 accepted). Measured on scienceworld
# 1.2.3 with random admissible commands: at gold-path states of 4 tasks (686 played) they are every rejection
# (121 of 121) and no accepted command; along random walks of 8 tasks (960 played) 103 of 208 rejections, and
# 3 accepted commands once the agent had opened the cupboard; the other rejections name objects the text alone
# does not tell apart and are left to verification. No gold action of the 30 tasks matches. An ambiguous
# command ("Ambiguous request: ...") is not one: gold paths answer the parser's question ("0") and go on.
PARSER_REJECTS = {
    "in_cupboard": re.compile(r"\bin cupboard\b"),
    "drawer": re.compile(r"\bdrawer\b(?! in )"),
}

# Gold-path length at variation 0 (scienceworld 1.2.3), used to size step limits: 2x gold, >= 30.
GOLD_LENGTHS = {
    "boil": 39,
    "change-the-state-of-matter-of": 26,
    "chemistry-mix": 23,
    "chemistry-mix-paint-secondary-color": 17,
    "chemistry-mix-paint-tertiary-color": 25,
    "find-animal": 10,
    "find-living-thing": 10,
    "find-non-living-thing": 5,
    "find-plant": 10,
    "freeze": 26,
    "grow-fruit": 77,
    "grow-plant": 63,
    "identify-life-stages-1": 41,
    "identify-life-stages-2": 16,
    "inclined-plane-determine-angle": 55,
    "inclined-plane-friction-named-surfaces": 51,
    "inclined-plane-friction-unnamed-surfaces": 178,
    "lifespan-longest-lived": 6,
    "lifespan-longest-lived-then-shortest-lived": 7,
    "lifespan-shortest-lived": 6,
    "measure-melting-point-known-substance": 28,
    "measure-melting-point-unknown-substance": 32,
    "melt": 34,
    "mendelian-genetics-known-plant": 144,
}
DEFAULT_GOLD_LENGTH = 50

# Tasks whose gold path is short (fast in tests, demos and the embedded default build).
FAST_TASKS = (
    "find-living-thing",
    "find-non-living-thing",
    "find-animal",
    "find-plant",
    "lifespan-longest-lived",
    "lifespan-shortest-lived",
    "lifespan-longest-lived-then-shortest-lived",
    "chemistry-mix-paint-secondary-color",
)


# The JVM's serial garbage collector, the default once the workers' JVMs fill every core: the JVM's own default
# (G1, with parallel and concurrent GC threads) is faster while spare cores run those threads, slower when they
# take CPU from another worker's simulator (``bench/run.py --only episodes`` measures both at 1 and 2 workers).
SERIAL_GC = "-XX:+UseSerialGC"


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity mask, which containers and ``taskset`` narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_jvm_options(workers: int, cores: int) -> str:
    """The serial GC when ``workers`` simulators (one JVM each) are at least as many as the ``cores``; else the
    JVM's default GC."""
    return SERIAL_GC if workers >= cores else ""


# Flags every simulator's JVM starts with, so that an episode plays the same whatever its JVM ran before
# (docs/evaluation.md, "Reproducible episodes"). ScienceWorld's objects have no hash code of their own and its
# worlds keep them in hash sets, so what a room lists, and in which order, and which object a gold path picks
# follow the JVM's identity hash codes: by default drawn from a per-thread random sequence that every object
# hashed before (earlier episodes, the JVM's own threads) has advanced. A constant identity hash (``hashCode=2``)
# makes each set's order a function of the operations that built it; ``load`` itself reseeds the JVM-wide random
# generator and resets the object-id counter.
REPRODUCIBLE_JVM_FLAGS = ("-XX:+UnlockExperimentalVMOptions", "-XX:hashCode=2")

_ENVIRON_LOCK = threading.Lock()


@contextlib.contextmanager
def _java_tool_options(flags: list[str]) -> Iterator[None]:
    """``JAVA_TOOL_OPTIONS`` with ``flags`` added while a JVM starts (every JVM reads it at start)."""
    if not flags:
        yield
        return
    with _ENVIRON_LOCK:
        before = os.environ.get("JAVA_TOOL_OPTIONS")
        os.environ["JAVA_TOOL_OPTIONS"] = " ".join([*(before.split() if before else []), *flags])
        try:
            yield
        finally:
            if before is None:
                del os.environ["JAVA_TOOL_OPTIONS"]
            else:
                os.environ["JAVA_TOOL_OPTIONS"] = before


def parser_rejection(command: str) -> str | None:
    """The :data:`PARSER_REJECTS` pattern ``command`` matches, if any."""
    lowered = command.lower()
    return next((name for name, pattern in PARSER_REJECTS.items() if pattern.search(lowered)), None)


@functools.lru_cache(maxsize=1)
def java_version() -> str | None:
    """The version of the ``java`` on PATH, which py4j starts the simulator with (None: none found)."""
    try:
        shown = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=60).stderr
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'version "([^"]+)"', shown)
    return match.group(1) if match else None


def step_limit(task_name: str) -> int:
    return max(30, 2 * GOLD_LENGTHS.get(task_name, DEFAULT_GOLD_LENGTH))


class ScienceWorld(TextEnv):
    """Adapter over ``scienceworld.ScienceWorldEnv``; see the module docstring."""

    name = ENV_NAME
    description = "ScienceWorld (30 tasks; variation splits train / dev / test; score 0-100)"
    splits = SPLITS
    eval_splits = ("test",)
    expert_options = MappingProxyType({"gold_path": True})
    score_scale = 100.0
    packages = ("scienceworld",)

    def __init__(
        self,
        *,
        simplification: str = "",
        gold_path: bool = False,
        max_steps: int | None = None,
        admissible: bool = False,
        jvm_options: Sequence[str] | str = (),
        reproducible: bool = True,
    ):
        """``admissible``: list the valid actions after every step (500+ strings, about half of a
        step's cost in the JVM). Data collection stores them; playing needs only the observation.
        ``jvm_options``: extra flags for this simulator's JVM (e.g. ``-XX:+UseSerialGC``: no GC
        threads competing with another worker's simulator), given to it through ``JAVA_TOOL_OPTIONS``
        (the package's launcher takes none); an environment pool picks the GC when none are given
        (:meth:`worker_options`). ``reproducible``: start the JVM with :data:`REPRODUCIBLE_JVM_FLAGS`, so an
        episode plays the same whatever ran before it (False: the JVM's default identity hashes; steps and world
        builds take about a quarter less time, and an episode's text depends on what its JVM ran before)."""
        try:
            from scienceworld import ScienceWorldEnv
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise EnvError("ScienceWorld is not installed: pip install 'openrlhf-act[envs]' (needs Java 17)") from exc
        try:
            flags = list(REPRODUCIBLE_JVM_FLAGS) if reproducible else []
            flags += jvm_options.split() if isinstance(jvm_options, str) else jvm_options
            with _java_tool_options(flags):
                self._env = ScienceWorldEnv("", envStepLimit=10_000)
        except Exception as exc:
            raise EnvError(f"could not start ScienceWorld's JVM (is Java 17 installed?): {exc}") from exc
        self._simplification = simplification
        self._gold_path = gold_path
        self._max_steps_override = max_steps
        self._task: EnvTask | None = None
        self._task_names = tuple(self._env.get_task_names())
        self._split_cache: dict[tuple[str, str], list[int]] = {}
        self._gold: list[str] | None = None
        self._moves = 0
        self._admissible = admissible
        self._last_score = 0
        self._fresh = False  # the loaded world has not been stepped: reset need not rebuild it
        self._closed = False
        self.max_steps = max_steps or 100

    @classmethod
    def worker_options(cls, options: Mapping[str, Any], workers: int) -> dict[str, Any]:
        """``jvm_options`` picked by workers per core (:func:`default_jvm_options`) unless given."""
        if "jvm_options" in options:
            return dict(options)
        return {**options, "jvm_options": default_jvm_options(workers, usable_cores())}

    @classmethod
    def versions(cls) -> dict[str, str | None]:
        """The package's version and the Java runtime's that runs its simulator."""
        return {**super().versions(), "java": java_version()}

    @classmethod
    def rejected_command(cls, command: str) -> str | None:
        return parser_rejection(command)

    # ---- task selection -------------------------------------------------------------------
    @classmethod
    def list_tasks(cls, **options: Any) -> list[str]:
        """Asks the simulator (starts a JVM for a second)."""
        with cls(**options) as env:
            return list(env.task_names)

    @classmethod
    def episodes(cls, query: EpisodeQuery, env: TextEnv | None = None) -> list[EnvTask]:
        split = query.split
        if split not in SPLITS:
            raise EnvError(f"unknown {ENV_NAME} split {split!r}; choose one of {', '.join(SPLITS)}")
        own = env is None
        if own:
            env = cls(**{k: v for k, v in query.options.items() if k != "gold_path"})
        assert isinstance(env, ScienceWorld)
        try:
            out = []
            for task in query.tasks or env.task_names:
                in_split = env.variations(task, split)  # raises for unknown tasks
                if query.variations:
                    missing = [v for v in query.variations if v not in in_split]
                    if missing:
                        raise EnvError(
                            f"variation(s) {', '.join(map(str, missing))} of {task!r} are not in the {split!r} "
                            f"split ({len(in_split)} variations, e.g. {', '.join(map(str, in_split[:5]))})"
                        )
                    picked = list(query.variations)
                else:
                    picked = in_split[: query.episodes] if query.episodes else in_split
                out += [EnvTask(ENV_NAME, task, variation=v, split=split) for v in picked]
            return out
        finally:
            if own:
                env.close()

    @property
    def task_names(self) -> tuple[str, ...]:
        return self._task_names

    def variations(self, task_name: str, split: str) -> list[int]:
        """The benchmark's variation ids of ``task_name`` in ``split`` (train / dev / test).

        Cached per adapter: the split lists are fixed per task, and asking needs a task load."""
        self._check_task_name(task_name)
        if split not in SPLITS:
            raise EnvError(f"unknown ScienceWorld split {split!r}; choose one of {', '.join(SPLITS)}")
        if (task_name, split) in self._split_cache:
            return list(self._split_cache[task_name, split])
        self._call(self._env.load, task_name, 0, self._simplification, False)
        self._task, self._fresh = None, False  # that load replaced the loaded episode
        getter = {
            "train": self._env.get_variations_train,
            "dev": self._env.get_variations_dev,
            "test": self._env.get_variations_test,
        }[split]
        self._split_cache[task_name, split] = [int(v) for v in self._call(getter)]
        return list(self._split_cache[task_name, split])

    def _check_task_name(self, task_name: str) -> None:
        if task_name not in self._task_names:
            close = [t for t in self._task_names if task_name.split("-")[0] in t][:5]
            hint = f" (did you mean: {', '.join(close)}?)" if close else ""
            raise EnvError(f"unknown ScienceWorld task {task_name!r}{hint}; see `openrlhf-act eval tasks scienceworld`")

    def load(self, task: EnvTask) -> None:
        self._check_task_name(task.name)
        variation = 0 if task.variation is None else task.variation
        limit = self._call(self._env.get_max_variations, task.name)
        if not isinstance(variation, int) or not 0 <= variation < limit:
            raise EnvError(f"ScienceWorld task {task.name!r} has variations 0..{limit - 1}, not {variation!r}")
        if task.split is not None and variation not in self.variations(task.name, task.split):
            raise EnvError(f"variation {variation} of {task.name!r} is not in the {task.split!r} split")
        self._call(self._env.load, task.name, variation, self._simplification, self._gold_path)
        self._fresh = True
        self._task = task
        self.max_steps = self._max_steps_override or step_limit(task.name)

    @property
    def task_description(self) -> str:
        return str(self._call(self._env.get_task_description))

    # ---- episode --------------------------------------------------------------------------
    def reset(self) -> EnvStep:
        """Start the loaded episode, as ``ScienceWorldEnv.reset`` does ("look around" is move 1).

        The JVM's ``reset`` is a second full ``load`` (world and gold path rebuilt): skipped when
        the world was just loaded and not stepped, which saves a whole world build per episode."""
        if self._task is None:
            raise EnvError("ScienceWorld: reset() before load()")
        if not self._fresh:
            self._call(self._env.server.reset)
        self._fresh = False
        self._env.lastStepScore = self._last_score = 0
        self._gold = self.expert_actions()
        self._moves = 0
        observation, _, _, info = self._advance("look around")
        return self._to_step(observation, 0.0, False, info, True)

    def step(self, action: str) -> EnvStep:
        self._fresh = False
        observation, reward, done, info = self._advance(action)
        self._moves += 1
        valid = not any(observation.strip().startswith(m) for m in INVALID_MARKERS)
        return self._to_step(observation, float(reward), bool(done), info, valid)

    def _advance(self, action: str) -> tuple[str, int, bool, dict[str, Any]]:
        """One simulator step: the package's full ``step`` when admissible actions are wanted."""
        return self._call(self._env.step if self._admissible else self._lean_step, action)

    def _lean_step(self, action: str) -> tuple[str, int, bool, dict[str, Any]]:
        """``ScienceWorldEnv.step`` without the four extra JVM round trips it makes for infos we do
        not use (look, inventory, task description, valid actions): same observation, score
        (0-100), reward (score delta) and completion rule (completed, or a negative score)."""
        server = self._env.server
        observation = str(server.step(action))
        score = round(100 * server.getScore())
        reward, self._last_score = score - self._last_score, score
        done = bool(server.getCompleted()) or score < 0
        return observation, reward, done, {"score": score, "moves": self._moves + 1}

    def _to_step(self, observation: str, reward: float, done: bool, info: dict[str, Any], valid: bool) -> EnvStep:
        score = float(info.get("score", 0))
        admissible = tuple(str(a) for a in info.get("valid", ()) or ())
        return EnvStep(
            observation=str(observation),
            reward=reward,
            score=score,
            done=bool(done) or score >= 100,
            won=score >= 100,
            admissible=admissible or None,
            valid=valid,
            info={"moves": info.get("moves"), "task": info.get("taskName"), "variation": info.get("variationIdx")},
            expert=self._gold[self._moves] if self._gold and self._moves < len(self._gold) else None,
        )

    def expert_actions(self) -> list[str] | None:
        if not self._gold_path:
            return None
        gold = [str(a) for a in self._call(self._env.get_gold_action_sequence)]
        if gold and gold[0].startswith("ERROR"):
            return None
        return gold

    # ---- plumbing ---------------------------------------------------------------------------
    def _call(self, fn, *args):
        if self._closed:
            raise EnvError("ScienceWorld adapter is closed")
        try:
            return fn(*args)
        except EnvError:
            raise
        except Exception as exc:
            name = type(exc).__name__
            if name.startswith("Py4J") or isinstance(exc, (ConnectionError, OSError)):
                raise EnvError(f"ScienceWorld's JVM stopped responding ({name}: {exc})") from exc
            raise EnvError(f"ScienceWorld failed: {name}: {exc}") from exc

    @property
    def java_pid(self) -> int | None:
        proc = getattr(getattr(self._env, "_gateway", None), "java_process", None)
        return getattr(proc, "pid", None)

    @property
    def child_pids(self) -> tuple[int, ...]:
        return () if self.java_pid is None else (self.java_pid,)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        proc: subprocess.Popen | None = getattr(getattr(self._env, "_gateway", None), "java_process", None)
        try:
            self._env.close()
        except Exception as exc:  # the JVM may already be gone
            logger.debug("ScienceWorld close: %s", exc)
        if proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
