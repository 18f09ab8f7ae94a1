"""A stand-in for OpenRLHF's vLLM engine that notes why each turn ended.

The next turn depends on it: a turn cut by the length limit ends the episode and executes nothing, and a
turn that ended at the end-of-turn token already holds part of the template's closing.
"""

from __future__ import annotations

from typing import Any

from openrlhf_act.integrations.openrlhf.online_env.live_episode import LiveEpisode


class EngineTap:
    """Passes generation to OpenRLHF's engine and notes why each turn ended (EOS, stop string, length)."""

    def __init__(self, engine: Any, episode: LiveEpisode):
        self._engine = engine
        self._episode = episode

    async def generate(self, *args: Any, **kwargs: Any) -> Any:
        output = await self._engine.generate(*args, **kwargs)
        completion = output.outputs[0]
        self._episode.last_output = {"finish_reason": completion.finish_reason, "stop_reason": completion.stop_reason}
        return output
