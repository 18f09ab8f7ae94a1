"""OpenRLHF agent file for online environment RL: live ScienceWorld / ALFWorld episodes in the rollout.

Use: ``--train.agent_func_path $(python -c "import openrlhf_act.integrations.openrlhf.env_executor as m;
print(m.__file__)")`` (``recipes/online_env.sh`` does this). OpenRLHF executes this file standalone inside
each vLLM rollout actor (absolute imports only) and instantiates ``AgentExecutor()`` with no arguments.

**Prompt rows.** Each row names an episode in its label (a JSON string), for example::

    {"kind": "online_env", "env": "scienceworld", "task": "find-animal", "variation": 225, "split": "train"}
    {"kind": "online_env", "env": "alfworld", "game": "json_2.1.1/train/<task dir>/<trial>/game.tw-pddl"}

(``game`` relative to ``$ALFWORLD_DATA`` or absolute; optional ``max_steps``). The row's prompt is not
used: the episode's opening turn is rendered from the live environment.

**Conversation.** The episode is one chat in the shape of the ``sft_multiturn`` IL data
(:func:`openrlhf_act.prompts.episode_messages`): system prompt, then a user turn with the task and the
first observation, then alternating assistant (the policy's reply, ending in ``Action: <command>``)
and user turns (the environment's next observation), rendered with the model's own chat template.
OpenRLHF gives every turn the whole remaining token budget, so a turn ends at the model's end-of-turn
token or at a stop string (``OPENRLHF_ACT_ENV_STOP``, default ``["\\nObservation:"]``: a ReAct model
that starts writing the environment's reply is cut there) added to the sampling parameters.

**Reward.** The episode's final score normalized to 0..1 (ScienceWorld score / 100 with negative
failure scores as 0; ALFWorld and WebShop-style success as 0/1), paid as per-step differences so that
the sum OpenRLHF takes is the normalized final score. ``scores`` is the same value. Every sample logs
the same ``extra_logs`` keys: ``env_score``, ``env_won``, ``env_steps``, ``env_invalid_actions``,
``env_unparseable``, ``env_done`` (the environment ended the episode) and ``env_error``.

**Simulators.** Each actor process keeps a pool of at most ``OPENRLHF_ACT_ENV_POOL`` (default 4)
simulators per environment and reuses them across episodes (a ScienceWorld JVM costs a second to
start). An episode holds one simulator from reset to its end; blocking simulator calls run in threads
(``asyncio.to_thread``) so the actor's event loop keeps generating for other episodes. A simulator that
fails is closed, never reused, and the episode ends with reward 0 and ``env_error`` = 1; every
simulator is closed when its episode fails and when the process exits. ``OPENRLHF_ACT_ENV_OPTIONS`` (a
JSON object ``{"alfworld": {"data_dir": ...}}``) passes adapter options;
``OPENRLHF_ACT_CHAT_TEMPLATE_KWARGS`` (JSON) is passed to the chat template (e.g. Qwen3's
``{"enable_thinking": false}``).
"""

# No ``from __future__ import annotations`` here: OpenRLHF executes this file by path without putting it
# in ``sys.modules``, and ``dataclasses`` looks string annotations up there.
import asyncio
import atexit
import contextvars
import json
import logging
import os
import threading
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any

from openrlhf.utils.agent import AgentInstanceBase, MultiTurnAgentExecutor

from openrlhf_act.actions import read_action
from openrlhf_act.envs.base import EnvError, EnvStep, EnvTask, TextEnv
from openrlhf_act.envs.registry import make_env
from openrlhf_act.errors import DataError
from openrlhf_act.prompts import episode_messages, safe_text

logger = logging.getLogger("openrlhf_act.env_executor")

KIND = "online_env"
ONLINE_ENVS = ("scienceworld", "alfworld")
POOL_ENV = "OPENRLHF_ACT_ENV_POOL"
OPTIONS_ENV = "OPENRLHF_ACT_ENV_OPTIONS"
STOP_ENV = "OPENRLHF_ACT_ENV_STOP"
TEMPLATE_ENV = "OPENRLHF_ACT_CHAT_TEMPLATE_KWARGS"
DEFAULT_STOP = ("\nObservation:",)
NO_ACTION_FEEDBACK = 'No action was recognised. End your reply with one line of the form "Action: <command>".'
LOG_KEYS = ("env_score", "env_won", "env_steps", "env_invalid_actions", "env_unparseable", "env_done", "env_error")


def _json_env(name: str, default: Any) -> Any:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name} is not valid JSON: {exc.msg}") from None


@dataclass(frozen=True)
class OnlineEnvLabel:
    """Which episode a prompt row plays."""

    env: str
    task: EnvTask
    max_steps: int | None = None

    @classmethod
    def decode(cls, raw: Any) -> "OnlineEnvLabel":
        try:
            data = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
        except json.JSONDecodeError as exc:
            raise DataError(f"online_env label is not JSON ({exc.msg})") from None
        if not isinstance(data, dict) or data.get("kind") != KIND:
            raise DataError(f"not an online_env label: {str(raw)[:120]!r}")
        env = data.get("env")
        if env not in ONLINE_ENVS:
            raise DataError(f"online_env label 'env' must be one of {', '.join(ONLINE_ENVS)}, got {env!r}")
        max_steps = data.get("max_steps")
        if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
            raise DataError(f"online_env label 'max_steps' must be a positive integer, got {max_steps!r}")
        if env == "alfworld":
            if not isinstance(data.get("game"), str):
                raise DataError("an alfworld online_env label needs 'game' (a game.tw-pddl path)")
            from openrlhf_act.envs.alfworld import task_type_of

            task = EnvTask(env, data.get("task") or task_type_of(data["game"]), game_file=data["game"])
        else:
            variation = data.get("variation", 0)
            if not isinstance(data.get("task"), str) or not isinstance(variation, int):
                raise DataError("a scienceworld online_env label needs 'task' (str) and 'variation' (int)")
            task = EnvTask(env, data["task"], variation=variation, split=data.get("split"))
        return cls(env, task, max_steps)


class EnvPool:
    """At most ``size`` simulators per environment in this process, reused across episodes."""

    def __init__(self, size: int, options: dict[str, dict[str, Any]]):
        if size < 1:
            raise ValueError(f"{POOL_ENV} must be >= 1, got {size}")
        self.size = size
        self.options = options
        self._idle: dict[str, list[TextEnv]] = {}
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._all: set[TextEnv] = set()
        self._lock = threading.Lock()

    async def acquire(self, env_name: str) -> TextEnv:
        limit = self._limits.setdefault(env_name, asyncio.Semaphore(self.size))
        await limit.acquire()
        with self._lock:
            idle = self._idle.setdefault(env_name, [])
            env = idle.pop() if idle else None
        if env is not None:
            return env
        try:
            env = await asyncio.to_thread(make_env, env_name, **self.options.get(env_name, {}))
        except BaseException:
            limit.release()
            raise
        with self._lock:
            self._all.add(env)
        return env

    async def release(self, env_name: str, env: TextEnv, *, broken: bool) -> None:
        """Return a healthy simulator for reuse; close a broken one."""
        if broken:
            with self._lock:
                self._all.discard(env)
            await asyncio.to_thread(_close_quietly, env)
        else:
            with self._lock:
                self._idle.setdefault(env_name, []).append(env)
        self._limits[env_name].release()

    def close_all(self) -> None:
        with self._lock:
            envs, self._all, self._idle = list(self._all), set(), {}
        for env in envs:
            _close_quietly(env)


def _close_quietly(env: TextEnv) -> None:
    try:
        env.close()
    except Exception as exc:  # a dead simulator may fail to close; it is dropped either way
        logger.debug("closing %s failed: %s", env.name, exc)


class ChatTurns:
    """The model's chat template cut into the pieces a running conversation needs."""

    def __init__(self, tokenizer: Any, template_kwargs: dict[str, Any]):
        self.tokenizer = tokenizer
        self.kwargs = template_kwargs
        probe = [
            {"role": "system", "content": "S"},
            {"role": "user", "content": "U1"},
            {"role": "assistant", "content": "A1"},
        ]
        closed = self._render(probe, generation=False)
        extended = self._render([*probe, {"role": "user", "content": "U2"}], generation=True)
        if not extended.startswith(closed) or "U2" not in extended[len(closed) :]:
            raise ValueError("the chat template does not extend a conversation by appending; it cannot run episodes")
        self.assistant_close = closed[closed.rindex("A1") + 2 :]
        self.user_prefix, self.user_suffix = extended[len(closed) :].split("U2", 1)
        eos = getattr(tokenizer, "eos_token", None) or ""
        self.after_eos = self.assistant_close.split(eos, 1)[1] if eos and eos in self.assistant_close else None

    def _render(self, messages: list[dict[str, str]], *, generation: bool) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation, **self.kwargs
        )

    def opening(self, env: str, task: str, observation: str) -> str:
        """System prompt and first user turn (task + first observation), as in ``sft_multiturn`` data."""
        messages = episode_messages(env, task, [(observation, "", None)])[:2]
        return self._render(messages, generation=True)

    def next_turn(self, observation: str, *, ended_by_eos: bool) -> str:
        """Close the assistant turn (unless its end-of-turn token is already there), then the user turn."""
        close = self.after_eos if ended_by_eos and self.after_eos is not None else self.assistant_close
        return close + self.user_prefix + safe_text(observation.strip()) + self.user_suffix


class Runtime:
    """Per-process state shared by all episodes of one rollout actor."""

    def __init__(self) -> None:
        self.pool = EnvPool(int(os.environ.get(POOL_ENV, "4")), _json_env(OPTIONS_ENV, {}))
        self.stop = [str(s) for s in _json_env(STOP_ENV, list(DEFAULT_STOP))]
        self.template_kwargs = _json_env(TEMPLATE_ENV, {})
        self.turns: ChatTurns | None = None
        atexit.register(self.pool.close_all)

    def chat(self, tokenizer: Any) -> ChatTurns:
        if self.turns is None or self.turns.tokenizer is not tokenizer:
            self.turns = ChatTurns(tokenizer, self.template_kwargs)
        return self.turns


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def runtime() -> Runtime:
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime()
        return _runtime


@dataclass
class Episode:
    """What one episode holds and counts; shared by the executor and its agent instance."""

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
    last_output: dict[str, Any] = field(default_factory=dict)
    admissible: tuple[str, ...] | None = None  # the current state's, for bare-command replies

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


_current: contextvars.ContextVar[Episode] = contextvars.ContextVar("openrlhf_act_episode")


class _EngineTap:
    """Passes generation to OpenRLHF's engine and notes why each turn ended (EOS, stop string, length)."""

    def __init__(self, engine: Any, episode: Episode):
        self._engine = engine
        self._episode = episode

    async def generate(self, *args: Any, **kwargs: Any) -> Any:
        output = await self._engine.generate(*args, **kwargs)
        completion = output.outputs[0]
        self._episode.last_output = {"finish_reason": completion.finish_reason, "stop_reason": completion.stop_reason}
        return output


class EnvEpisode(AgentInstanceBase):
    """One live episode (OpenRLHF creates one per sample)."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.episode = _current.get()

    async def reset(self, states: dict, **kwargs: Any) -> dict[str, str]:
        episode = self.episode
        try:
            episode.label = OnlineEnvLabel.decode(states.get("label"))
            episode.env = await runtime().pool.acquire(episode.label.env)
            first = await asyncio.to_thread(self._start, episode.env, episode.label.task)
        except (EnvError, DataError, ValueError) as exc:
            self._fail(exc)
            return {"observation": states["observation"]}
        episode.max_steps = episode.label.max_steps or episode.env.max_steps
        episode.admissible = first.admissible
        self._score(first)
        return {
            "observation": episode.turns.opening(episode.label.env, episode.env.task_description, first.observation)
        }

    @staticmethod
    def _start(env: TextEnv, task: EnvTask) -> EnvStep:
        env.load(task)
        return env.reset()

    def _fail(self, exc: Exception) -> None:
        episode = self.episode
        episode.error = f"{type(exc).__name__}: {exc}"
        episode.broken = isinstance(exc, EnvError)
        logger.warning("online episode failed (reward 0): %s", episode.error)

    def _score(self, step: EnvStep) -> float:
        """Set the episode's normalized score from ``step``; return the change (this step's reward)."""
        assert self.episode.env is not None
        before = self.episode.normalized
        self.episode.normalized = self.episode.env.normalized_score(step.score)
        self.episode.won = step.won
        return self.episode.normalized - before

    async def step(self, states: dict, **kwargs: Any) -> dict[str, Any]:
        import torch

        episode = self.episode
        reward = 0.0
        feedback = ""
        if episode.error is None and episode.env is not None:
            try:
                reward, observation = await self._act(states["action_text"])
            except EnvError as exc:
                self._fail(exc)
                reward = -episode.normalized  # a failed episode earns nothing: undo what was paid
                episode.normalized = 0.0
            else:
                out_of_steps = episode.steps >= episode.max_steps
                if not (episode.done or out_of_steps) and episode.last_output.get("finish_reason") != "length":
                    ended_by_eos = episode.last_output.get("stop_reason") is None
                    feedback = episode.turns.next_turn(observation, ended_by_eos=ended_by_eos)
        finished = episode.error is not None or episode.done or not feedback
        return {
            "rewards": torch.tensor(reward, dtype=torch.float32),
            "scores": episode.normalized,
            "environment_feedback": feedback,
            "done": finished,
            "sampling_params": states.get("sampling_params"),
            "extra_logs": episode.logs(),
        }

    async def _act(self, response: str) -> tuple[float, str]:
        episode = self.episode
        assert episode.env is not None
        episode.steps += 1
        truncated = episode.last_output.get("finish_reason") == "length"
        action, _ = read_action(response, admissible=episode.admissible, truncated=truncated)
        if action is None:
            episode.unparseable += 1
            return 0.0, NO_ACTION_FEEDBACK
        step = await asyncio.to_thread(episode.env.step, action)
        episode.invalid += not step.valid
        episode.done = step.done
        episode.admissible = step.admissible
        return self._score(step), step.observation


class AgentExecutor(MultiTurnAgentExecutor):
    """OpenRLHF's multi-turn executor over :class:`EnvEpisode`, with stop strings, the simulator pool and
    per-episode bookkeeping (every simulator goes back to the pool or is closed, also on errors)."""

    def __init__(self) -> None:
        super().__init__(EnvEpisode)

    async def execute(self, prompt, label, sampling_params, max_length: int, hf_tokenizer, llm_engine, images=None):
        state = runtime()
        episode = Episode(turns=state.chat(hf_tokenizer))
        params = deepcopy(sampling_params)
        params.stop = list(dict.fromkeys([*(params.stop or []), *state.stop]))
        token = _current.set(episode)
        try:
            result = await super().execute(
                prompt, label, params, max_length, hf_tokenizer, _EngineTap(llm_engine, episode), images
            )
        finally:
            _current.reset(token)
            if episode.env is not None and episode.label is not None:
                await state.pool.release(episode.label.env, episode.env, broken=episode.broken)
        result["reward"] = episode.normalized if episode.error is None else 0.0
        result["scores"] = result["reward"]
        result["extra_logs"] = episode.logs()
        return result
