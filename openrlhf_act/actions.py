"""Action strings: normalization (for equality) and parsing an action out of a policy's response.

The agent answers in ReAct style: optional reasoning (free text and/or a ``<think>`` block), then one
line ``Action: <command>``. The same parser reads sampled alternatives, next-action RL responses and
evaluation episodes, so a model is judged on exactly what it was trained to emit.
"""

from __future__ import annotations

import re
import string

_SPACES = re.compile(r"\s+")
_EDGE_PUNCT = string.punctuation + "“”‘’«»…"
_ACTION_LINE = re.compile(r"^[ \t>*#`]*action\s*[:：]\s*(.*?)\s*$", re.IGNORECASE | re.MULTILINE)
_THINK_CLOSE = re.compile(r"</think\s*>", re.IGNORECASE)
_THINK_OPEN = re.compile(r"<think\s*>", re.IGNORECASE)
_QUOTES = "`'\"“”‘’"
MAX_ACTION_CHARS = 300

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


def normalize_action(action: str) -> str:
    """Lowercase, collapse whitespace, strip punctuation at both ends (ACT_METHOD.md, section 3)."""
    return _SPACES.sub(" ", action).strip().lower().strip(_EDGE_PUNCT + " ")


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
    response is still reasoning and holds no final answer. (The reasoning itself is never needed,
    only its length, so it is not copied.)
    """
    last = _last_think_close(response)
    if last is not None:
        return last.start(), response[last.end() :], False
    if _THINK_OPEN.search(response):
        return len(response), "", True
    return 0, response, False


def _last_think_close(text: str) -> re.Match[str] | None:
    """The last ``</think>``: walk back over ``"</"`` (a fast literal search) instead of scanning the
    whole text with a case-insensitive pattern; the verdict tag usually follows it, so ~2 steps."""
    at = len(text)
    while (at := text.rfind("</", 0, at)) >= 0:
        match = _THINK_CLOSE.match(text, at)
        if match is not None:
            return match
    return None


def parse_action(response: str) -> str | None:
    """The action a response commits to, or ``None`` when it commits to none.

    Grammar: the last ``Action: ...`` line after the reasoning; otherwise a final text consisting of
    exactly one short line is taken as the action itself (base models often answer bare commands).
    Surrounding quotes/backticks are removed. Empty or over-long actions are rejected.
    """
    text, _ = strip_end_markers(response)
    _, final, unclosed = final_segment(text)
    if unclosed:
        return None
    matches = _ACTION_LINE.findall(final)
    if matches:
        candidate = matches[-1]
    else:
        lines = [ln.strip() for ln in final.strip().splitlines() if ln.strip()]
        if len(lines) != 1:
            return None
        candidate = lines[0]
    candidate = candidate.strip().strip(_QUOTES).strip()
    if candidate.endswith(".") and not candidate.endswith(".."):
        candidate = candidate[:-1].rstrip()
    if not candidate or len(candidate) > MAX_ACTION_CHARS or "\n" in candidate:
        return None
    return candidate


def match_admissible(action: str, admissible: tuple[str, ...] | list[str] | None) -> str | None:
    """The admissible command equal to ``action`` after normalization, if any."""
    if not admissible:
        return None
    wanted = normalize_action(action)
    for candidate in admissible:
        if normalize_action(candidate) == wanted:
            return candidate
    return None
