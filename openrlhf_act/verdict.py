"""The verdict grammar: which candidate a judgment response chose, or why it is malformed.

Grammar (ACT_METHOD.md, section 4), applied to the *response only*, never the prompt::

    response   := reasoning? final end_marker*
    reasoning  := anything up to and including the last "</think>"   (the "<think>" may be missing:
                                                                      chat templates pre-fill it)
    final      := text containing one or more verdict tags
    verdict    := "<answer>" NAME? INDEX NAMED? "</answer>"            (case-insensitive; tag name
                                                                      configurable)
    NAME       := "action" | "candidate" | "option"
    INDEX      := digits, in "(1)", "[1]", "#1" or bare form        (ASCII or full-width digits)
    NAMED      := ":" the candidate's text                           ("Action 1: go to kitchen")

* Verdict tags inside the reasoning are drafts and are ignored.
* Every verdict tag in the final text must name the same index; otherwise the response hedged.
* A tag whose content is not a single index ("Action 1 or Action 2", "1, 2", "B", empty) is a hedge.
* INDEX must lie in 1..K. A "<think>" that is never closed (also one the chat template pre-filled:
  callers put it back in front, ``actions.with_prefilled_think``), no verdict at all, or a response cut
  off by the length limit is malformed.
* The index decides. A named text that is exactly another candidate ("Action 1: <candidate 2>") is
  a contradiction (``disagree``); any other text (a paraphrase) is ignored.
* ``bare`` (the no-reasoning control: a prompt that asks for the verdict alone): the response must be
  one verdict tag and nothing else but whitespace and an empty think block; reasoning anywhere, or
  text around the tag, is malformed (``reasoned``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

from openrlhf_act.actions import final_segment, normalize_action, strip_end_markers

OK = "ok"
NO_VERDICT = "no_verdict"
HEDGE = "hedge"
DISAGREE = "disagree"
OUT_OF_RANGE = "out_of_range"
UNCLOSED_THINK = "unclosed_think"
UNBALANCED_TAGS = "unbalanced_tags"
TRUNCATED = "truncated"
REASONED = "reasoned"

MALFORMED_REASONS = (NO_VERDICT, HEDGE, DISAGREE, OUT_OF_RANGE, UNCLOSED_THINK, UNBALANCED_TAGS, TRUNCATED, REASONED)
_THINK_TAGS = re.compile(r"</?think>", re.IGNORECASE)

_INDEX = re.compile(
    r"""^[\s*"'`]*(?:(?:action|candidate|option)\s*)?[#(\[]?\s*([0-9０-９]{1,6})\s*[)\]]?"""
    r"""(?:\s*[:：]\s*(.*?))?[\s*"'`.]*$""",
    re.IGNORECASE | re.DOTALL,
)


class Verdict(NamedTuple):
    """The parsed choice (1-based) or ``None`` with the reason it is malformed (a NamedTuple: built
    once per scored sample, it costs a third of a frozen dataclass)."""

    choice: int | None
    reason: str
    reasoning_chars: int
    final_chars: int

    @property
    def malformed(self) -> bool:
        return self.choice is None


@lru_cache(maxsize=8)
def _tag_pattern(tag: str) -> re.Pattern[str]:
    """Opening and closing verdict tags in one pattern, so the final text is scanned once."""
    return re.compile(rf"<(/?){re.escape(tag)}\s*>", re.IGNORECASE)


def _tag_parts(final: str, tag: str) -> tuple[list[str], list[str]] | None:
    """The contents of the verdict tags in order and the texts around them, or ``None`` when opening
    and closing tags do not alternate (a nested, unclosed or stray tag). One ``re.split``: text, sep,
    text, sep, ... where a sep is "" for an opening tag and "/" for a closing one."""
    parts = _tag_pattern(tag).split(final)
    separators = parts[1::2]
    if len(separators) % 2 or separators != ["", "/"] * (len(separators) // 2):
        return None
    return parts[2::4], parts[0::4]


def _reasons(reasoning: str, contents: list[str], around: list[str]) -> bool:
    """Whether a response says more than one verdict: any reasoning, another tag, text around it."""
    return bool(_THINK_TAGS.sub("", reasoning).strip()) or len(contents) > 1 or any(t.strip() for t in around)


def parse_verdict(
    response: str,
    num_candidates: int,
    *,
    truncated: bool = False,
    tag: str = "answer",
    candidates: Sequence[str] | None = None,
    bare: bool = False,
) -> Verdict:
    """Apply the grammar above. Never raises for any string input.

    >>> parse_verdict("<think>Only the kitchen has a fridge.</think><answer>Action 2</answer>", 2)
    Verdict(choice=2, reason='ok', reasoning_chars=37, final_chars=25)
    >>> parse_verdict("<answer>Action 1 or Action 2</answer>", 2).reason
    'hedge'
    >>> parse_verdict("<think><answer>Action 1</answer>?</think><answer>(2)</answer>", 2).choice  # drafts ignored
    2
    >>> parse_verdict("<answer>Action 1: go to kitchen</answer>", 2, candidates=["open door", "go to kitchen"]).reason
    'disagree'
    >>> parse_verdict("The kitchen has the key. <answer>Action 2</answer>", 2, bare=True).reason
    'reasoned'
    """
    text, _ = strip_end_markers(response)
    r_chars, final, unclosed = final_segment(text)
    f_chars = len(final)
    if truncated:
        return Verdict(None, TRUNCATED, r_chars, f_chars)
    if unclosed:
        return Verdict(None, UNCLOSED_THINK, r_chars, f_chars)
    parts = _tag_parts(final, tag)
    if parts is None:
        return Verdict(None, UNBALANCED_TAGS, r_chars, f_chars)
    contents, around = parts
    if not contents:
        return Verdict(None, NO_VERDICT, r_chars, f_chars)
    if bare and _reasons(text[:r_chars], contents, around):
        return Verdict(None, REASONED, r_chars, f_chars)
    indices = set()
    for content in contents:
        match = _INDEX.match(content)
        if match is None:
            return Verdict(None, HEDGE, r_chars, f_chars)
        index = int(match.group(1))
        indices.add(index)
        if match.group(2) and candidates and _names_another(match.group(2), index, candidates):
            return Verdict(None, DISAGREE, r_chars, f_chars)
    if len(indices) > 1:
        return Verdict(None, DISAGREE, r_chars, f_chars)
    (choice,) = indices
    if not 1 <= choice <= num_candidates:
        return Verdict(None, OUT_OF_RANGE, r_chars, f_chars)
    return Verdict(choice, OK, r_chars, f_chars)


def _names_another(named: str, index: int, candidates: Sequence[str]) -> bool:
    """Whether ``named`` is exactly a candidate other than number ``index``."""
    wanted = normalize_action(named)
    return any(normalize_action(c) == wanted for i, c in enumerate(candidates, 1) if i != index)
