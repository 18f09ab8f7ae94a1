"""OpenAI chat transcripts: ``{"messages": [{"role": "system"|"user"|"assistant", "content"}]}``.

Optional keys: ``id`` or ``task_id`` (the task id), ``env``, and an outcome (``score`` or ``reward``,
``success``). ``content`` may be a string or a list of ``{"type": "text", "text"}`` parts.
"""

from __future__ import annotations

from typing import Any

from data_tools.readers.base import FileContext, Reader, Record, RecordError, optional_id, outcome_of, type_name
from data_tools.readers.chat import ASSISTANT, Turn, conversation_to_trajectory, read_turns
from data_tools.readers.envtext import resolve_env
from openrlhf_act.schema import Trajectory


def declared_env(obj: dict[str, Any]) -> str | None:
    env = obj.get("env")
    if env is not None and type(env) is not str:
        raise RecordError(f"field 'env' is {type_name(env)}, expected a string", reason="wrong_type")
    return env


def chat_trajectory(obj: dict[str, Any], turns: list[Turn], record: Record, ctx: FileContext, fmt: str) -> Trajectory:
    """Shared by the OpenAI and ShareGPT readers: ids, env and outcome come from optional keys."""
    task_id = optional_id(obj, "task_id", "id")
    env = resolve_env(
        declared_env(obj),
        ctx.env_override,
        (task_id, ctx.path.name),
        tuple(t.text for t in turns[:3] if t.role != ASSISTANT),
    )
    return conversation_to_trajectory(
        turns,
        task_id=task_id or ctx.fallback_task_id(record.index),
        env=env,
        outcome=outcome_of(obj),
        meta={"format": fmt},
    )


class OpenAIReader(Reader):
    name = "openai"
    summary = 'OpenAI chat: {"messages": [{"role", "content"}]}, optional "id"/"task_id"/"env"'

    def convert(self, record: Record, ctx: FileContext) -> Trajectory:
        return chat_trajectory(record.value, read_turns(record.value, "messages"), record, ctx, self.name)
