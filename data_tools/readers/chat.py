"""Chat-shaped trajectories (ETO, AgentGym, OpenAI, ShareGPT) as one list of turns, then one conversion.

A user turn is an observation, an assistant turn is an expert step ("Thought: ... Action: ..."), except
a ReAct "think: ..." pseudo-action, which becomes part of the next step's thought.
Instructions are not states: system turns, leading instruction/acknowledgement pairs ("... OK") and,
where the format says so, in-context examples are the preamble. The user turn(s) that open the real
episode give the task and the first observation; every later user turn is the observation after the
previous action; a final user turn after the last action is not a state.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from data_tools.readers.base import RecordError, type_name
from data_tools.readers.envtext import extract_task, has_task_marker, observation_parts, strip_task_headers
from data_tools.readers.expert import ACTION_LABEL, split_thought_action
from openrlhf_act.schema import Outcome, Step, Trajectory

USER, ASSISTANT, SYSTEM = "user", "assistant", "system"
SPEAKERS = {
    "human": USER,
    "user": USER,
    "observation": USER,
    "environment": USER,
    "env": USER,
    "tool": USER,
    "gpt": ASSISTANT,
    "assistant": ASSISTANT,
    "model": ASSISTANT,
    "agent": ASSISTANT,
    "system": SYSTEM,
}
# "OK", "Ok.", "OK. I'll follow your instructions ...": the acknowledgement after an instruction.
_ACKNOWLEDGEMENT = re.compile(r"^\s*(?:ok(?:ay)?|sure|understood|got it|i understand|i will|i'll)\b", re.I)
_OBSERVATION_START = re.compile(r"^\s*observation\s*\d*\s*:", re.I)
# ReAct's "think: ..." / "think[...]" pseudo-action (ALFWorld, WebShop) and the "OK." it is answered with.
_THINK_ACTION = re.compile(r"^think\s*(?::\s*(?P<colon>.*)|\[(?P<bracket>.*)\])$", re.I | re.S)
_THINK_REPLY = re.compile(r"^\s*(?:observation\s*\d*\s*:\s*)?ok\.?\s*$", re.I)
_EPISODE_END = re.compile(r"episode finished, reward\s*=\s*(?P<value>true|false|-?\d+(?:\.\d+)?)", re.I)


@dataclass(frozen=True, slots=True)
class Turn:
    """``number`` is the 1-based position in the record's list, for error messages."""

    role: str
    text: str
    number: int
    loss: bool | None = None


def _content_text(content: Any, number: int, key: str) -> str:
    """A turn's text: a string, or OpenAI-style content parts of type "text"."""
    if type(content) is str:
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        texts = [p.get("text") for p in content]
        if all(type(t) is str for t in texts):
            return "".join(texts)
    raise RecordError(
        f"turn {number}: '{key}' is {type_name(content)}, expected a string (or a list of text parts)",
        reason="wrong_type",
    )


def read_turns(record: dict[str, Any], field: str) -> list[Turn]:
    """Turns from ``record[field]``; each turn has ``from``/``role`` and ``value``/``content`` (mixing allowed)."""
    items = record.get(field)
    if items is None:
        raise RecordError(f"missing field '{field}' (expected an array of turns)", reason="missing_field")
    if type(items) is not list:
        raise RecordError(f"field '{field}' is {type_name(items)}, expected an array of turns", reason="wrong_type")
    turns = []
    for number, item in enumerate(items, 1):
        if type(item) is not dict:
            raise RecordError(f"turn {number} is {type_name(item)}, expected an object", reason="wrong_type")
        speaker_key = "from" if "from" in item else "role"
        text_key = "value" if "value" in item else "content"
        if speaker_key not in item:
            raise RecordError(f"turn {number} has no 'from' (or 'role')", reason="missing_field")
        if text_key not in item:
            raise RecordError(f"turn {number} has no 'value' (or 'content')", reason="missing_field")
        speaker = item[speaker_key]
        role = SPEAKERS.get(speaker.lower()) if type(speaker) is str else None
        if role is None:
            raise RecordError(
                f"turn {number}: unknown speaker {speaker!r} (expected human/gpt/system or user/assistant/system)",
                reason="bad_value",
            )
        loss = item.get("loss")
        turns.append(
            Turn(role, _content_text(item[text_key], number, text_key), number, loss if type(loss) is bool else None)
        )
    return turns


def is_acknowledgement(text: str) -> bool:
    """An assistant reply to an instruction ("OK", "Ok.", "OK. I'll follow ..."), not an action."""
    return _ACKNOWLEDGEMENT.match(text) is not None and ACTION_LABEL.search(text) is None


def looks_like_eto(turns: Sequence[Any]) -> bool:
    """ETO's fixed opening: a user instruction then an assistant acknowledgement, or its one-prompt form."""
    if not turns or not all(isinstance(t, dict) for t in turns[:2]):
        return False
    first = turns[0]
    first_text = first.get("value", first.get("content"))
    if SPEAKERS.get(str(first.get("from", first.get("role"))).lower()) != USER or type(first_text) is not str:
        return False
    if "Now, it's your turn" in first_text:
        return True
    if len(turns) < 2:
        return False
    second = turns[1]
    second_text = second.get("value", second.get("content"))
    role = SPEAKERS.get(str(second.get("from", second.get("role"))).lower())
    return role == ASSISTANT and type(second_text) is str and is_acknowledgement(second_text)


def _block_start(turns: list[Turn], index: int) -> int:
    """The first turn of the run of user turns that ends at ``index``."""
    while index > 0 and turns[index - 1].role == USER:
        index -= 1
    return index


def _fresh_openings(turns: list[Turn], pos: int) -> list[int]:
    """User turns after an action that are no answer to it: they state a new task.

    When the environment prefixes its answers with "Observation:" (ETO, IPR), every other user turn
    after an action opens an episode (InterCode's questions carry no task marker); otherwise the
    turn must state a task (rule 2's markers). "OK." answering a think action opens nothing."""
    replies = [i for i in range(pos + 1, len(turns)) if turns[i].role == USER and turns[i - 1].role == ASSISTANT]
    prefixed = any(_OBSERVATION_START.match(turns[i].text) for i in replies)
    return [
        i
        for i in replies
        if not _OBSERVATION_START.match(turns[i].text)
        and not _THINK_REPLY.match(turns[i].text)
        and (prefixed or has_task_marker(turns[i].text))
    ]


def episode_start(turns: list[Turn], *, skip_examples: bool) -> int | None:
    """Index of the first user turn of the real episode (None when there is none)."""
    experts = [i for i, t in enumerate(turns) if t.role == ASSISTANT and t.loss is True]
    if experts:  # AgentGym: turns with loss false/null before the first expert turn are the preamble
        first = experts[0]
        if first == 0 or turns[first - 1].role != USER:
            raise RecordError(
                f"turn {turns[first].number}: the first expert turn has no observation before it", reason="bad_value"
            )
        return _block_start(turns, first - 1)
    pos = 0
    while pos < len(turns) and turns[pos].role == SYSTEM:
        pos += 1
    while (
        pos + 1 < len(turns)
        and turns[pos].role == USER
        and turns[pos + 1].role == ASSISTANT
        and is_acknowledgement(turns[pos + 1].text)
    ):
        pos += 2
        while pos < len(turns) and turns[pos].role == SYSTEM:
            pos += 1
    if pos >= len(turns):
        return None
    if skip_examples:  # in-context examples: the episode opens at the last fresh task statement
        openings = _fresh_openings(turns, pos)
        if openings:
            pos = openings[-1]
    if turns[pos].role != USER:
        raise RecordError(
            f"turn {turns[pos].number}: the episode starts with an assistant turn (expected the task first)",
            reason="bad_value",
        )
    return pos


def conversation_to_trajectory(
    turns: list[Turn],
    *,
    task_id: str,
    env: str,
    outcome: Outcome,
    meta: dict[str, Any],
    skip_examples: bool = False,
) -> Trajectory:
    """The expert steps of one conversation (see the module docstring for the rules)."""
    start = episode_start(turns, skip_examples=skip_examples)
    if start is None:
        return Trajectory(task_id, env, "", (), outcome, meta)
    end = start
    while end < len(turns) and turns[end].role == USER:
        end += 1
    opening = strip_task_headers("\n\n".join(t.text for t in turns[start:end]))
    task = extract_task(opening)
    steps: list[Step] = []
    pending: list[str] | None = [opening]
    thoughts: list[str] = []  # from think pseudo-actions, for the next real action
    after_think = False
    for turn in turns[end:]:
        if turn.role == SYSTEM:
            continue
        if turn.role == USER:
            if after_think and _THINK_REPLY.match(turn.text):
                after_think = False
                continue
            after_think = False
            if pending is None:
                pending = [turn.text]
            else:
                pending.append(turn.text)
            continue
        if pending is None:
            raise RecordError(
                f"turn {turn.number}: two assistant turns in a row (expected an observation between actions)",
                reason="bad_value",
            )
        parsed = split_thought_action(turn.text)
        if parsed is None:
            raise RecordError(
                f"turn {turn.number}: no action found (expected a line 'Action: <command>')", reason="no_action"
            )
        thought, action = parsed
        think = _THINK_ACTION.match(action)
        if think:  # a thought the agent "said" to the environment: no step, and its "OK." is no observation
            thoughts += [t for t in (thought, (think.group("colon") or think.group("bracket") or "").strip()) if t]
            after_think = True
            continue
        if thought:
            thoughts.append(thought)
        observation, admissible = observation_parts("\n\n".join(pending))
        steps.append(Step(observation, action, "\n".join(thoughts) or None, admissible))
        pending, thoughts = None, []
    return Trajectory(task_id, env, task, tuple(steps), _with_closing_outcome(outcome, pending), meta)


def _with_closing_outcome(outcome: Outcome, closing: list[str] | None) -> Outcome:
    """FireAct ends each episode with "Observation: Episode finished, reward = True" (or a number):
    that is the outcome when the record carries none (the closing turn is no state)."""
    if closing is None or outcome != Outcome():
        return outcome
    match = _EPISODE_END.search("\n".join(closing))
    if match is None:
        return outcome
    value = match.group("value").lower()
    if value in ("true", "false"):
        return Outcome(success=value == "true")
    return Outcome(score=float(value))
