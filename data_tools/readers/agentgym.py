"""AgentGym AgentTraj (WooooDyy/AgentGym): ``{"item_id", "conversations": [{"from", "loss", "value"}]}``.

``item_id`` is ``<env>_<index>`` (``sciworld_12``, ``alfworld_3``, ``webshop_5238``, also ``babyai_``,
``textcraft_`` ...). Turns with ``loss`` false/null before the first expert turn (``loss: true``) are
the preamble (the environment's instruction and "OK. I'll follow your instructions ..."). Expert
turns read "Thought:\\n...\\n\\nAction:\\n<command>". ALFWorld observations end with
"AVAILABLE ACTIONS: a,b,c", which becomes the step's admissible actions.
"""

from __future__ import annotations

import re
from typing import Any

from data_tools.readers.base import FileContext, Reader, Record, optional_id, outcome_of
from data_tools.readers.chat import USER, conversation_to_trajectory, read_turns
from data_tools.readers.envtext import normalize_env, resolve_env
from openrlhf_act.schema import Trajectory

_ITEM_ID = re.compile(r"^([A-Za-z][A-Za-z_]*?)_\d+$")


def env_of_item(item_id: str | None) -> str | None:
    """``sciworld_12`` -> ``scienceworld``; unknown prefixes are kept (``babyai_3`` -> ``babyai``)."""
    match = _ITEM_ID.match(item_id or "")
    return normalize_env(match.group(1).lower()) if match else None


class AgentGymReader(Reader):
    name = "agentgym"
    summary = 'AgentGym AgentTraj: {"item_id", "conversations": [{"from", "loss", "value"}]}'

    def convert(self, record: Record, ctx: FileContext) -> Trajectory:
        obj: dict[str, Any] = record.value
        turns = read_turns(obj, "conversations")
        item_id = optional_id(obj, "item_id", "id")
        env = resolve_env(
            None,
            ctx.env_override or env_of_item(item_id),  # the id prefix names the env, unless overridden
            (ctx.path.name,),
            tuple(t.text for t in turns[:3] if t.role == USER),
        )
        return conversation_to_trajectory(
            turns,
            task_id=item_id or ctx.fallback_task_id(record.index),
            env=env,
            outcome=outcome_of(obj),
            meta={"format": self.name},
        )
