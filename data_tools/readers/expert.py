"""What one expert turn commits to: its thought and its whole command.

The action grammar is :func:`openrlhf_act.actions.parse_action` (the first ``Action:`` line; a fenced
block right after it is the whole multi-line command). Expert transcripts are trusted text written
for other parsers, so an expert turn may also, as the public data does:

- label its command ``Act:`` (AgentInstruct's OS tasks: ``Act: answer(220)``);
- name the kind of command, then give it in a fenced block or as a final answer (AgentInstruct:
  ``Action: Operation`` + a ```` ```sql ```` block, ``Act: bash`` + a ```` ```bash ```` block,
  ``Action: Answer`` + ``Final Answer: [...]``): the block, or the answer line, is the command;
- be a bare one-line command (ReAct's ``go to desk 1``, a final text after ``</think>``), which a
  policy's reply may only be when the command is admissible.

The thought is the text before the command's label, without ``Thought:``/``Think:`` labels and
``<think>`` tags, or None when empty.
"""

from __future__ import annotations

import re

from openrlhf_act.actions import clean_command, final_segment, parse_action, strip_end_markers

ACTION_LABEL = re.compile(r"^[ \t>*#`]*(?:action|act)\s*[:：][ \t]*(?P<rest>.*?)[ \t]*$", re.I | re.M)
_ACT_LABEL = re.compile(r"^(?P<lead>[ \t>*#`]*)act(?P<colon>\s*[:：])", re.I | re.M)
_THOUGHT_LABEL = re.compile(r"^[ \t]*(?:thought|think)\s*[:：][ \t]*", re.I | re.M)
_THINK_TAGS = re.compile(r"</?think\s*>", re.I)
_KIND = re.compile(r"[A-Za-z][\w-]*")
_FINAL_ANSWER = re.compile(r"final answer\s*[:：]", re.I)


def split_thought_action(text: str) -> tuple[str | None, str] | None:
    """(thought, action) of an expert turn, or None when it commits to no action."""
    stripped, _ = strip_end_markers(text)
    _, final, unclosed = final_segment(stripped)
    if unclosed:
        return None
    final_start = len(stripped) - len(final)
    label = ACTION_LABEL.search(final)
    if label is None:  # a bare command: everything before the final text is reasoning
        action, before = _bare_command(final), stripped[:final_start]
    else:
        action = _kind_and_block(final, label) or parse_action(_ACT_LABEL.sub(r"\g<lead>Action\g<colon>", final))
        before = stripped[: final_start + label.start()]
    if action is None:
        return None
    thought = _THOUGHT_LABEL.sub("", _THINK_TAGS.sub("", before)).strip()
    return thought or None, action


def _kind_and_block(final: str, label: re.Match[str]) -> str | None:
    """``Action: Operation`` + a fenced block -> the block; ``Action: Answer`` + ``Final Answer: X``
    -> that line. None when the label line holds the command itself."""
    if not _KIND.fullmatch(label.group("rest")):
        return None
    after = final[label.end() :].lstrip()
    if after.startswith(("```", "~~~")):  # the action grammar reads a fenced block after "Action:"
        block = parse_action("Action: " + after)
        return block.strip() if block else None
    if _FINAL_ANSWER.match(after):
        return after.splitlines()[0].strip()
    return None


def _bare_command(final: str) -> str | None:
    """A final text of exactly one line, cleaned as :func:`parse_action` cleans a command; a line
    labelled "Thought:" is reasoning that commits to nothing (FireAct has such turns)."""
    lines = [line.strip() for line in final.splitlines() if line.strip()]
    if len(lines) != 1 or _THOUGHT_LABEL.match(lines[0]):
        return None
    return clean_command(lines[0]) or None
