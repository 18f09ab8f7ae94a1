"""ETO (Yifan-Song793/ETO) expert trajectories: ``{"id", "conversations": [{"from", "value"}]}``.

The released files (``data/{webshop,sciworld,alfworld}_sft.json``) are JSON arrays. Each conversation
opens with the environment's instruction and a "OK" reply, then the task (ALFWorld: the room and
"Your task is to: ..."; ScienceWorld: the task description; WebShop: the search page with
"Instruction: [SEP] ... [SEP]"), then "Thought: ... Action: ..." turns answered by "Observation: ...".
Extra keys are kept where useful: WebShop's ``reward`` becomes the outcome score, ALFWorld's
``game_file`` names the task when there is no ``id``. ETO's evaluation logs also carry in-context
examples (a whole example episode before the real task): they are skipped.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from data_tools.readers.base import FileContext, Reader, Record, RecordError, optional_id, outcome_of, type_name
from data_tools.readers.chat import USER, conversation_to_trajectory, read_turns
from data_tools.readers.envtext import resolve_env
from openrlhf_act.schema import Trajectory


def game_name(game_file: str) -> str:
    """``.../pick_and_place_simple-.../trial_T2019...[/game.tw-pddl]`` -> ``trial_T2019...``."""
    path = PurePosixPath(game_file)
    return path.parent.name if path.suffix else path.name


class EtoReader(Reader):
    name = "eto"
    summary = 'ETO: {"id", "conversations": [{"from": "human"|"gpt", "value"}]}, instruction + "OK" preamble'

    def convert(self, record: Record, ctx: FileContext) -> Trajectory:
        obj: dict[str, Any] = record.value
        turns = read_turns(obj, "conversations")
        game_file = obj.get("game_file")
        if game_file is not None and type(game_file) is not str:
            raise RecordError(f"field 'game_file' is {type_name(game_file)}, expected a string", reason="wrong_type")
        task_id = optional_id(obj, "id") or (game_name(game_file) if game_file else None)
        meta: dict[str, Any] = {"format": self.name}
        if game_file:
            meta["game_file"] = game_file
        env = resolve_env(
            None,
            ctx.env_override,
            (game_file, task_id, ctx.path.name),
            tuple(t.text for t in turns[:3] if t.role == USER),
        )
        return conversation_to_trajectory(
            turns,
            task_id=task_id or ctx.fallback_task_id(record.index),
            env=env,
            outcome=outcome_of(obj),
            meta=meta,
            skip_examples=True,
        )
