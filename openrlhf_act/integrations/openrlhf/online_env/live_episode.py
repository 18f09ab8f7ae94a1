"""One live episode of the online executor: its environment worker, its counters, and what each reply does.

The reward is the episode's normalized score (:func:`openrlhf_act.envs.base.normalized_score`, as
evaluation reports it), paid as per-step differences so that the sum OpenRLHF takes is the final
normalized score. A failed episode (bad label, simulator error) scores 0 and is not won: what was paid
is taken back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from openrlhf_act.actions import read_action
from openrlhf_act.envs.base import EnvStep, normalized_score
from openrlhf_act.envs.online_label import OnlineEnvLabel
from openrlhf_act.envs.pool import START, STEP, EnvWorker, Started, WorkerFailed
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
    pool: SimulatorPool | None = None
    worker: EnvWorker | None = None  # lent by ``pool`` from start to release
    max_steps: int = 0
    score_scale: float = 1.0
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
        """Take a worker and start the labelled episode: the opening turn, or ``None`` when it failed."""
        try:
            self.label = OnlineEnvLabel.decode(label)
            self.pool, self.worker = pool, await pool.acquire(self.label.env)
            started: Started = await pool.request(self.worker, START, self.label.task)
        except (WorkerFailed, DataError, ValueError) as exc:
            self._fail(exc)
            return None
        self.max_steps = self.label.max_steps or started.max_steps
        self.score_scale = started.score_scale
        self.admissible = started.first.admissible
        self._score(started.first)
        return self.turns.opening(self.label.env, started.task_description, started.first.observation)

    async def step(self, response: str) -> tuple[float, str]:
        """Play one reply: this step's reward and the next user turn (``""`` when the episode is over)."""
        if self.error is not None or self.worker is None:
            return 0.0, ""
        try:
            reward, observation = await self._act(response)
        except WorkerFailed as exc:
            reward = -self.normalized  # a failed episode earns nothing: undo what was paid
            self._fail(exc)
            return reward, ""
        if self.done or self.steps >= self.max_steps or self.last_output.get("finish_reason") == "length":
            return reward, ""
        ended_by_eos = self.last_output.get("stop_reason") is None
        return reward, self.turns.next_turn(observation, ended_by_eos=ended_by_eos)

    async def _act(self, response: str) -> tuple[float, str]:
        assert self.pool is not None and self.worker is not None
        self.steps += 1
        truncated = self.last_output.get("finish_reason") == "length"
        action, _ = read_action(response, admissible=self.admissible, truncated=truncated)
        if action is None:
            self.unparseable += 1
            return 0.0, NO_ACTION_FEEDBACK
        step: EnvStep = await self.pool.request(self.worker, STEP, action)
        self.invalid += not step.valid
        self.done = step.done
        self.admissible = step.admissible
        return self._score(step), step.observation

    def _score(self, step: EnvStep) -> float:
        """Set the episode's normalized score from ``step``; return the change (this step's reward)."""
        before = self.normalized
        self.normalized = normalized_score(step.score, self.score_scale)
        self.won = step.won
        return self.normalized - before

    def _fail(self, exc: Exception) -> None:
        self.error = f"{type(exc).__name__}: {exc}"
        self.normalized, self.won = 0.0, False
        logger.warning("online episode failed (reward 0): %s", self.error)

    async def release(self, pool: SimulatorPool) -> None:
        """Give the worker back to ``pool`` (a failed one was already restarted, or dropped its simulator)."""
        if self.worker is not None and self.label is not None:
            pool.release(self.label.env, self.worker)
            self.worker = None

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
