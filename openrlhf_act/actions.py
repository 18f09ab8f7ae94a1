"""What an agent's response commits to: the one well-formed action of a reply, and action equality.

One grammar serves every place that reads an action: the alternatives the samplers produce, the
``next_action`` reward, the evaluation harness and the online environment executor. So the action a
response is rewarded for is exactly the action an episode executes, and an alternative in an ACT
pair is always something the agent could have done.

Grammar (``docs/actions.md`` shows examples of each rule)::

    response := reasoning? final end_marker*
    reasoning:  everything up to the last "</think>". A "<think>" never closed is still reasoning:
                no action. (A "<think>" the chat template pre-filled is put back in front of the
                reply first, :func:`with_prefilled_think`, so every reader sees a whole response.)
    final:      cut at the first line starting with "Observation:" -- the model imagining the
                environment's answer; what follows was never executed.
    action:     the first "Action: <command>" line of the final text. A fenced block right after
                "Action:" (```lang ... ```) is the whole multi-line command, without the language tag.
                Another "Action:" line naming a different command makes the response ambiguous.
    bare:       with no "Action:" line, a final text of exactly one line counts only when it is an
                admissible command of the state (base models answer bare commands; prose does not).

A response cut off by the length limit commits to nothing, whatever it holds.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

_EDGE_PUNCT = string.punctuation + "“”‘’«»…"
_ACTION_LINE = re.compile(r"^[ \t>*#`]*action\s*[:：][ \t]*(.*?)[ \t]*$", re.IGNORECASE | re.MULTILINE)
_OBSERVATION_LINE = re.compile(r"^[ \t>*#]*observation\s*[:：]", re.IGNORECASE | re.MULTILINE)
_FENCE = re.compile(r"(`{3,}|~{3,})[^\n`]*\n(.*?)\n[ \t]*\1[ \t]*$", re.MULTILINE | re.DOTALL)
_THINK_CLOSE = re.compile(r"</think\s*>", re.IGNORECASE)
_THINK_OPEN = re.compile(r"<think\s*>", re.IGNORECASE)
_PREFILLED_THINK = re.compile(r"<think\s*>\s*$", re.IGNORECASE)
_QUOTES = "`'\"“”‘’"
MAX_ACTION_CHARS = 2000

# Admissible commands as a list, or as the index :func:`admissible_index` builds once per state.
Admissible = Sequence[str] | Mapping[str, str]

# Why a response commits to no action (counted by the samplers' manifest and the rewards' logs).
OK = "ok"
TRUNCATED = "truncated"
UNCLOSED_THINK = "unclosed_think"
NO_ACTION = "no_action"
EMPTY_ACTION = "empty_action"
SEVERAL_ACTIONS = "several_actions"
OVER_LONG = "over_long"
UNCLOSED_FENCE = "unclosed_fence"
BARE_NOT_ADMISSIBLE = "bare_not_admissible"

# Markers that end a turn in common chat templates; they are never part of an action or verdict.
END_MARKERS = (
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|end|>",
    "<end_of_turn>",
    "<eos>",
    "</s>",
    "<|eos|>",
    "<｜end▁of▁sentence｜>",
    "<|return|>",
)


class Completion(NamedTuple):
    """One sampled reply and why generation stopped: ``"stop"`` (end of turn or a stop string),
    ``"length"`` (cut off by the token limit) or ``None`` when the backend does not say.
    ``think_open``: the rendered prompt pre-filled a ``<think>`` (:func:`prompt_opens_think`)."""

    text: str
    finish_reason: str | None = None
    think_open: bool = False

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"

    @property
    def response(self) -> str:
        """The whole response, the pre-filled ``<think>`` included: what rewards and parsers read."""
        return with_prefilled_think(self.text, self.think_open)


class ActionRead(NamedTuple):
    """The committed action, or ``None`` with the reason (one of the constants above)."""

    action: str | None
    reason: str


def normalize_action(action: str) -> str:
    """Lowercase, collapse whitespace, strip punctuation at both ends (ACT_METHOD.md, section 3)."""
    return " ".join(action.split()).lower().strip(_EDGE_PUNCT + " ")


def admissible_index(commands: Iterable[str]) -> dict[str, str]:
    """Each normalized form -> the first command with it, for :func:`match_admissible` in O(1) (a
    ScienceWorld state lists ~1,000 commands; the reward builds this once per label and caches it).

    >>> admissible_index(["Open  Door.", "open door", "look around"])["open door"]
    'Open  Door.'
    """
    index: dict[str, str] = {}
    for command in commands:
        index.setdefault(normalize_action(command), command)
    return index


def strip_end_markers(text: str) -> tuple[str, bool]:
    """Remove trailing end-of-turn markers; return the text and whether any marker was found."""
    stripped = text.rstrip()
    found = False
    while stripped.endswith(END_MARKERS):  # one C call decides the common cases
        for marker in END_MARKERS:
            if stripped.endswith(marker):
                stripped = stripped[: -len(marker)].rstrip()
                found = True
                break
    return stripped, found


def final_segment(response: str) -> tuple[int, str, bool]:
    """Split a response into (length of the reasoning, final text, reasoning_unclosed).

    The final text is what follows the last ``</think>``; with no think block the whole response is
    final. ``reasoning_unclosed`` is true when a ``<think>`` was opened and never closed, i.e. the
    response is still reasoning and holds no final answer.
    (The reasoning itself is never needed, only its length, so it is not copied.)
    """
    last = _last_think_close(response)
    if last is not None:
        return last.start(), response[last.end() :], False
    if _THINK_OPEN.search(response):
        return len(response), "", True
    return 0, response, False


def prompt_opens_think(prompt: str) -> bool:
    """Whether the rendered prompt ends inside a ``<think>`` the chat template pre-filled (DeepSeek-R1,
    Qwen3 thinking-2507 and others): the response then starts in the middle of its reasoning."""
    return _PREFILLED_THINK.search(prompt, max(0, len(prompt) - 64)) is not None


def with_prefilled_think(response: str, think_open: bool) -> str:
    """The response with the ``<think>`` its chat template pre-filled put back in front, so a reply that
    never closes its reasoning reads as unclosed (and one that does, as reasoning then an answer)."""
    return "<think>" + response if think_open else response


def _last_think_close(text: str) -> re.Match[str] | None:
    """The last ``</think>``: walk back over ``"</"`` (a fast literal search) instead of scanning the
    whole text with a case-insensitive pattern; the verdict tag usually follows it, so ~2 steps."""
    at = len(text)
    while (at := text.rfind("</", 0, at)) >= 0:
        match = _THINK_CLOSE.match(text, at)
        if match is not None:
            return match
    return None


def read_action(
    response: str,
    *,
    admissible: Admissible | None = None,
    truncated: bool = False,
) -> ActionRead:
    """Apply the grammar of the module docstring. Never raises for any string input.

    >>> read_action("<think>The drawer may hold the key.</think>Action: open drawer 1")
    ActionRead(action='open drawer 1', reason='ok')
    >>> read_action("Action: open drawer 1\\nAction: go to desk 1")
    ActionRead(action=None, reason='several_actions')
    >>> read_action("I would look around first.", admissible=["look around"]).reason
    'bare_not_admissible'
    >>> read_action("Action: open drawer 1", truncated=True).reason  # cut off by the length limit
    'truncated'
    """
    if truncated:
        return ActionRead(None, TRUNCATED)
    text, _ = strip_end_markers(response)
    _, final, unclosed = final_segment(text)
    if unclosed:
        return ActionRead(None, UNCLOSED_THINK)
    observation = _OBSERVATION_LINE.search(final)
    if observation is not None:
        final = final[: observation.start()]
    first = _ACTION_LINE.search(final)
    if first is None:
        return _bare_action(final, admissible)
    action, end = _action_at(final, first)
    if action is None:
        return ActionRead(None, UNCLOSED_FENCE)
    for other in _ACTION_LINE.finditer(final, end):
        again, _ = _action_at(final, other)
        if again is None or normalize_action(again) != normalize_action(action):
            return ActionRead(None, SEVERAL_ACTIONS)
    return _checked(action)


def _action_at(final: str, line: re.Match[str]) -> tuple[str | None, int]:
    """The command of one ``Action:`` line and where it ends: the rest of the line, the fenced block
    that opens on it or on the next line, or (``Action:`` alone) the next line. ``None`` for a fence
    that never closes."""
    rest = line.group(1)
    if rest.startswith(("```", "~~~")):
        if len(rest) > 6 and rest.endswith(rest[:3]):  # "Action: ```ls -la```" on one line
            return rest, line.end()
        return _fenced(final, line.start(1))
    if rest:
        return rest, line.end()
    below = len(final) - len(final[line.end() :].lstrip())
    if final.startswith(("```", "~~~"), below):
        return _fenced(final, below)
    following = final[below:].split("\n", 1)[0]
    return following, below + len(following)


def _fenced(final: str, at: int) -> tuple[str | None, int]:
    fence = _FENCE.match(final, at)
    return (None, len(final)) if fence is None else (fence.group(2), fence.end())


def _bare_action(final: str, admissible: Admissible | None) -> ActionRead:
    lines = [ln for ln in final.strip().splitlines() if ln.strip()]
    if len(lines) != 1:
        return ActionRead(None, NO_ACTION)
    if not admissible:
        return ActionRead(None, NO_ACTION)
    matched = match_admissible(clean_command(lines[0]), admissible)
    return ActionRead(matched, OK) if matched is not None else ActionRead(None, BARE_NOT_ADMISSIBLE)


def clean_command(candidate: str) -> str:
    """A one-line command without surrounding quotes/backticks and a final full stop (``go to kitchen.``)."""
    candidate = candidate.strip().strip(_QUOTES).strip()
    if candidate.endswith(".") and not candidate.endswith(".."):
        candidate = candidate[:-1].rstrip()
    return candidate


def _checked(action: str) -> ActionRead:
    candidate = clean_command(action) if "\n" not in action else action.strip()
    if not candidate:
        return ActionRead(None, EMPTY_ACTION)
    if len(candidate) > MAX_ACTION_CHARS:
        return ActionRead(None, OVER_LONG)
    return ActionRead(candidate, OK)


def parse_action(
    response: str,
    *,
    admissible: Admissible | None = None,
    truncated: bool = False,
) -> str | None:
    """The action a response commits to (see :func:`read_action`), or ``None``.

    >>> parse_action("Thought: the key is in the drawer.\\nAction: open drawer 1")
    'open drawer 1'
    >>> parse_action("Action: go to desk 1\\nObservation: On the desk 1, you see a pen.\\nAction: take pen")
    'go to desk 1'
    >>> parse_action("Action:\\n```sql\\nSELECT name\\nFROM pets;\\n```")
    'SELECT name\\nFROM pets;'
    >>> parse_action("look around") is None, parse_action("look around", admissible=["look around"])
    (True, 'look around')
    """
    return read_action(response, admissible=admissible, truncated=truncated).action


def match_admissible(action: str, admissible: Admissible | None) -> str | None:
    """The admissible command equal to ``action`` after normalization, if any (the first such command;
    ``admissible`` may be the list or its :func:`admissible_index`)."""
    if not admissible:
        return None
    wanted = normalize_action(action)
    if isinstance(admissible, Mapping):
        return admissible.get(wanted)
    for candidate in admissible:
        if normalize_action(candidate) == wanted:
            return candidate
    return None
