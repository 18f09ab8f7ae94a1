"""OpenRLHF agent file for online environment RL: live ScienceWorld / ALFWorld episodes in the rollout.

Use: ``--train.agent_func_path $(python -c "import openrlhf_act.integrations.openrlhf.env_executor as m;
print(m.__file__)")`` (``recipes/online_env.sh`` does this). OpenRLHF executes this file standalone inside
each vLLM rollout actor (absolute imports only) and instantiates ``AgentExecutor()`` with no arguments.
This file holds only the two OpenRLHF classes; the episode, the simulators, the chat turns and the
settings are regular modules of :mod:`openrlhf_act.integrations.openrlhf.online_env`.

**Prompt rows.** Each row names an episode in its label (a JSON string, :mod:`openrlhf_act.envs.online_label`),
for example::

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

**Simulators.** Each actor process keeps at most ``OPENRLHF_ACT_ENV_POOL`` (default 4) simulator worker
processes per environment from the one environment pool (:mod:`openrlhf_act.envs.pool`) and reuses them
across episodes (a ScienceWorld JVM costs a second to start). An episode holds one worker from reset to
its end; its blocking requests run in threads (``asyncio.to_thread``) so the actor's event loop keeps
generating for other episodes. A worker whose simulator crashed or hung is replaced before it serves
again, and the episode ends with reward 0 and ``env_error`` = 1; every worker is closed when the
process exits. ``OPENRLHF_ACT_ENV_OPTIONS`` (a
JSON object ``{"alfworld": {"data_dir": ...}}``) passes adapter options;
``OPENRLHF_ACT_CHAT_TEMPLATE_KWARGS`` (JSON) is passed to the chat template (e.g. Qwen3's
``{"enable_thinking": false}``).
"""

# OpenRLHF executes this file by path without putting it in ``sys.modules``: absolute imports only, and
# dataclasses (which look string annotations up in ``sys.modules``) belong in the package modules.
import contextvars
from copy import deepcopy
from typing import Any

from openrlhf.utils.agent import AgentInstanceBase, MultiTurnAgentExecutor

from openrlhf_act.integrations.openrlhf.online_env.engine_tap import EngineTap
from openrlhf_act.integrations.openrlhf.online_env.live_episode import LiveEpisode
from openrlhf_act.integrations.openrlhf.online_env.runtime import runtime

# How the executor hands each sample's episode to the agent instance OpenRLHF creates for it.
_current: contextvars.ContextVar[LiveEpisode] = contextvars.ContextVar("openrlhf_act_episode")


class EnvAgentInstance(AgentInstanceBase):
    """OpenRLHF's agent instance for one live episode (OpenRLHF creates one per sample)."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.episode = _current.get()

    async def reset(self, states: dict, **kwargs: Any) -> dict[str, str]:
        opening = await self.episode.start(states.get("label"), runtime().pool)
        return {"observation": states["observation"] if opening is None else opening}

    async def step(self, states: dict, **kwargs: Any) -> dict[str, Any]:
        import torch

        reward, feedback = await self.episode.step(states["action_text"])
        return {
            "rewards": torch.tensor(reward, dtype=torch.float32),
            "scores": self.episode.normalized,
            "environment_feedback": feedback,
            "done": not feedback,
            "sampling_params": states.get("sampling_params"),
            "extra_logs": self.episode.logs(),
        }


class AgentExecutor(MultiTurnAgentExecutor):
    """OpenRLHF's multi-turn executor over :class:`EnvAgentInstance`, with stop strings, the simulator pool
    and per-episode bookkeeping (every simulator goes back to the pool or is closed, also on errors)."""

    def __init__(self) -> None:
        super().__init__(EnvAgentInstance)

    async def execute(self, prompt, label, sampling_params, max_length: int, hf_tokenizer, llm_engine, images=None):
        state = runtime()
        episode = LiveEpisode(turns=state.chat(hf_tokenizer))
        params = deepcopy(sampling_params)
        params.stop = list(dict.fromkeys([*(params.stop or []), *state.stop]))
        token = _current.set(episode)
        try:
            result = await super().execute(
                prompt, label, params, max_length, hf_tokenizer, EngineTap(llm_engine, episode), images
            )
        finally:
            _current.reset(token)
            await episode.release(state.pool)
        result["reward"] = result["scores"] = episode.normalized  # 0 for a failed episode
        result["extra_logs"] = episode.logs()
        return result
