"""ShareGPT conversations: ``{"conversations": [{"from": "system"|"human"|"gpt", "value"}]}``.

The same optional keys as the OpenAI format (``id``/``task_id``, ``env``, ``score``/``reward``,
``success``). System turns and a leading instruction/acknowledgement pair are the preamble.
"""

from __future__ import annotations

from data_tools.readers.base import FileContext, Reader, Record
from data_tools.readers.chat import read_turns
from data_tools.readers.openai import chat_trajectory
from openrlhf_act.schema import Trajectory


class ShareGPTReader(Reader):
    name = "sharegpt"
    summary = 'ShareGPT: {"conversations": [{"from": "system"|"human"|"gpt", "value"}]}'

    def convert(self, record: Record, ctx: FileContext) -> Trajectory:
        return chat_trajectory(record.value, read_turns(record.value, "conversations"), record, ctx, self.name)
