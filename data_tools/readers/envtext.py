"""What the public trajectory data says about its environment, in its own words.

Environment names are normalized (``sciworld`` -> ``scienceworld``); the environment is inferred from
ids, file names or tell-tale phrases when a record does not name it; the task is found in the first
observation; an ``AVAILABLE ACTIONS:`` list becomes the step's admissible actions. Observations are
otherwise passed through unchanged (huge ones too: the state builder clips them later).
"""

from __future__ import annotations

import re

UNKNOWN_ENV = "unknown"
ENV_ALIASES = {
    "scienceworld": "scienceworld",
    "sciworld": "scienceworld",
    "science_world": "scienceworld",
    "alfworld": "alfworld",
    "alfred": "alfworld",
    "webshop": "webshop",
    "web_shop": "webshop",
    "textworld": "textworld",
}
_ENV_IN_NAME = re.compile(
    r"(?<![a-z])(scienceworld|sciworld|science_world|alfworld|alfred|webshop|web_shop|textworld)", re.I
)
# ALFWorld game ids (ETO's game files, AgentGym mappings): task-type directories and trial stamps.
_ALFWORLD_GAME = re.compile(r"pick_(?:and|clean|heat|cool|two)_|look_at_obj|trial_T\d{8}")
_TEXT_CUES = (
    (re.compile(r"WebShop \[SEP\]|You are web shopping|Instruction: \[SEP\]|^Webshop[ \t]*$", re.I | re.M), "webshop"),
    (re.compile(r"Interact with a household|Welcome to TextWorld, ALFRED|Your task is to:"), "alfworld"),
    (re.compile(r"science world|scientific experiment|This room is called the", re.I), "scienceworld"),
)

# Task markers, most specific first: ALFWorld, WebShop, ScienceWorld, then a generic "Task:" line.
_ALFWORLD_TASK = re.compile(r"Your task is to:\s*(.+)")
_WEBSHOP_TASK = re.compile(r"Instruction:\s*\[SEP\]\s*(.+?)\s*(?:\[SEP\]|$)", re.M)
# ReAct's WebShop pages put the instruction on the line after "Instruction:".
_WEBSHOP_LINES_TASK = re.compile(r"^[ \t]*Instruction:[ \t]*\n[ \t]*(\S.*?)[ \t]*$", re.M)
_SCIENCEWORLD_TASK = re.compile(r"^\s*(Your task is to\b.*\S)", re.M)
_GENERIC_TASK = re.compile(r"^\s*(?:task|goal)\s*:[ \t]*(\S.*)$", re.I | re.M)
TASK_MARKERS = (_ALFWORLD_TASK, _WEBSHOP_TASK, _WEBSHOP_LINES_TASK, _SCIENCEWORLD_TASK, _GENERIC_TASK)

# Framing added by ETO's prompts around the real task (never part of what the environment said).
_ETO_TURN_HEADER = re.compile(r"^.*?Now, it's your turn[^\n]*\n", re.S)
_TASK_DESCRIPTION_HEADER = re.compile(r"^\s*Task Description:\s*\n")
# AgentBench / AgentInstruct OS tasks: "Now, I will start a new problem in a new OS. My problem is:"
_NEW_PROBLEM_HEADER = re.compile(r"^\s*Now, I will start a new problem[^\n]*?My problem is:[ \t]*\n\s*")
_OBSERVATION_PREFIX = re.compile(r"^\s*Observation\s*\d*\s*:[ \t]*\n?", re.I)
_AVAILABLE_ACTIONS = re.compile(r"^[ \t]*AVAILABLE ACTIONS\s*:", re.I | re.M)
_ADMISSIBLE_SPLIT = re.compile(r"[,\n]")


def normalize_env(name: str) -> str:
    """Known names (and their aliases) to ``scienceworld``/``alfworld``/``webshop``; others unchanged."""
    stripped = name.strip()
    return ENV_ALIASES.get(stripped.lower().replace("-", "_").replace(" ", "_"), stripped)


def env_from_name(name: str | None) -> str | None:
    """An environment named inside an id or file name (``sciworld_12``, ``alfworld_sft.json``)."""
    if not name:
        return None
    match = _ENV_IN_NAME.search(name)
    if match:
        return normalize_env(match.group(1))
    return "alfworld" if _ALFWORLD_GAME.search(name) else None


def env_from_text(*texts: str) -> str | None:
    """An environment recognized from its instructions or first observation."""
    for pattern, env in _TEXT_CUES:
        if any(pattern.search(text) for text in texts):
            return env
    return None


def resolve_env(
    declared: str | None, override: str | None, names: tuple[str | None, ...], texts: tuple[str, ...]
) -> str:
    """Record's own ``env`` > the caller's override > ids/file names > text cues > ``unknown``."""
    for candidate in (declared, override):
        if candidate and candidate.strip():
            return normalize_env(candidate)
    for name in names:
        env = env_from_name(name)
        if env:
            return env
    return env_from_text(*texts) or UNKNOWN_ENV


def strip_task_headers(text: str) -> str:
    """Drop prompt framing: everything up to ETO's "Now, it's your turn ...", a "Task Description:"
    header and AgentBench's "Now, I will start a new problem ... My problem is:"."""
    if "Now, it's your turn" in text:
        text = _ETO_TURN_HEADER.sub("", text, count=1)
    text = _NEW_PROBLEM_HEADER.sub("", text, count=1)
    return _TASK_DESCRIPTION_HEADER.sub("", text, count=1)


def has_task_marker(text: str) -> bool:
    return any(marker.search(text) for marker in TASK_MARKERS)


def extract_task(text: str) -> str:
    """The task stated in an episode's opening text; the whole text when no marker is found."""
    for marker in TASK_MARKERS:
        match = marker.search(text)
        if match:
            return match.group(1).strip()
    return text.strip()


def strip_observation_prefix(text: str) -> str:
    return _OBSERVATION_PREFIX.sub("", text, count=1) if text.lstrip()[:1] in ("O", "o") else text


def split_admissible(text: str) -> tuple[str, tuple[str, ...] | None]:
    """Cut an ``AVAILABLE ACTIONS: a,b,c`` list (AgentGym) off an observation.

    The list runs to the end of the text; items are separated by commas or newlines.
    """
    match = _AVAILABLE_ACTIONS.search(text)
    if match is None:
        return text, None
    items = (item.strip() for item in _ADMISSIBLE_SPLIT.split(text[match.end() :]))
    return text[: match.start()].rstrip(), tuple(item for item in items if item)


def observation_parts(text: str) -> tuple[str, tuple[str, ...] | None]:
    """What the agent observed (``Observation:`` prefix removed) and the admissible actions, if listed."""
    observation, admissible = split_admissible(strip_observation_prefix(text))
    return observation.strip(), admissible
