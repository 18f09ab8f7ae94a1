"""One live episode of the online executor: its simulator, its counters, and what each reply does.

The reward is the episode's normalized score (:func:`openrlhf_act.envs.base.normalized_score`, as
evaluation reports it), paid as per-step differences so that the sum OpenRLHF takes is the final
normalized score. A failed episode (bad label, simulator error) scores 0 and is not won: what was paid
is taken back.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from openrlhf_act.actions import read_action
from openrlhf_act.envs.base import EnvError, EnvStep, EnvTask, TextEnv, normalized_score
from openrlhf_act.envs.online_label import OnlineEnvLabel
from openrlhf_act.errors import DataError
from openrlhf_act.integrations.openrlhf.online_env.chat_turns import ChatTurns
from openrlhf_act.integrations.openrlhf.online_env.simulator_pool import SimulatorPool
from openrlhf_act.prompts import NO_ACTION_FEEDBACK

logger = logging.getLogger("openrlhf_act.env_executor")

LOG_KEYS = ("env_score", "env_won", "env_steps", "env_invalid_actions", "env_unparseable", "env_done", "env_error")


@dataclass
class LiveEpisode:
    """What one episode holds and counts; shared by the executor, its agent instance and the engine tap."""

    turns: ChatTurns
    label: OnlineEnvLabel | None = None
    env: TextEnv | None = None
    broken: bool = False
    max_steps: int = 0
    steps: int = 0
    invalid: int = 0
    unparseable: int = 0
    normalized: float = 0.0
    won: bool = False
    done: bool = False
    error: str | None = None
    last_output: dict[str, Any] = field(default_factory=dict)  # why the last turn ended (see EngineTap)
    admissible: tuple[str, ...] | None = None  # the current state's, for bare-command replies

    async def start(self, label: Any, pool: SimulatorPool) -> str | None:
        """Take a simulator and start the labelled episode: the opening turn, or ``None`` when it failed."""
        try:
            self.label = OnlineEnvLabel.decode(label)
            self.env = await pool.acquire(self.label.env)
            first = await asyncio.to_thread(_load_and_reset, self.env, self.label.task)
        except (EnvError, DataError, ValueError) as exc:
            self._fail(exc)
            return None
        self.max_steps = self.label.max_steps or self.env.max_steps
        self.admissible = first.admissible
        self._score(first)
        return self.turns.opening(self.label.env, self.env.task_description, first.observation)

    async def step(self, response: str) -> tuple[float, str]:
        """Play one reply: this step's reward and the next user turn (``""`` when the episode is over)."""
        if self.error is not None or self.env is None:
            return 0.0, ""
        try:
            reward, observation = await self._act(response)
        except EnvError as exc:
            reward = -self.normalized  # a failed episode earns nothing: undo what was paid
            self._fail(exc)
            return reward, ""
        if self.done or self.steps >= self.max_steps or self.last_output.get("finish_reason") == "length":
            return reward, ""
        ended_by_eos = self.last_output.get("stop_reason") is None
        return reward, self.turns.next_turn(observation, ended_by_eos=ended_by_eos)

    async def _act(self, response: str) -> tuple[float, str]:
        assert self.env is not None
        self.steps += 1
        truncated = self.last_output.get("finish_reason") == "length"
        action, _ = read_action(response, admissible=self.admissible, truncated=truncated)
        if action is None:
            self.unparseable += 1
            return 0.0, NO_ACTION_FEEDBACK
        step = await asyncio.to_thread(self.env.step, action)
        self.invalid += not step.valid
        self.done = step.done
        self.admissible = step.admissible
        return self._score(step), step.observation

    def _score(self, step: EnvStep) -> float:
        """Set the episode's normalized score from ``step``; return the change (this step's reward)."""
        assert self.env is not None
        before = self.normalized
        self.normalized = normalized_score(step.score, self.env.score_scale)
        self.won = step.won
        return self.normalized - before

    def _fail(self, exc: Exception) -> None:
        self.error = f"{type(exc).__name__}: {exc}"
        self.broken = isinstance(exc, EnvError)
        self.normalized, self.won = 0.0, False
        logger.warning("online episode failed (reward 0): %s", self.error)

    async def release(self, pool: SimulatorPool) -> None:
        """Give the simulator back to ``pool`` (closed there when it broke)."""
        if self.env is not None and self.label is not None:
            await pool.release(self.label.env, self.env, broken=self.broken)

    def logs(self) -> dict[str, float]:
        return {
            "env_score": self.normalized,
            "env_won": float(self.won),
            "env_steps": float(self.steps),
            "env_invalid_actions": float(self.invalid),
            "env_unparseable": float(self.unparseable),
            "env_done": float(self.done),
            "env_error": float(self.error is not None),
        }


def _load_and_reset(env: TextEnv, task: EnvTask) -> EnvStep:
    env.load(task)
    return env.reset()
