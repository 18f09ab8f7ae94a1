"""Which format a file holds, decided from its first non-empty record (docs/formats.md, "Detection").

``.json``: the first item of the array (or the single object). ``.jsonl``: the first non-blank line
that decodes, which must be a JSON object (a broken line before it is left to the reader, which
locates it). Any other name: JSON rules when the first non-blank line is a JSON object, otherwise a
ReAct transcript when one of its first episodes has an action line.

A file that cannot be read at all raises :class:`RecordError` with a reason (``empty_file``,
``bad_json``, ``not_utf8``, ``unknown_format``): under ``on_error="skip"`` the whole file is set aside.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_tools.readers.base import (
    UTF8_BOM,
    RecordError,
    decode_json_line,
    empty_file_error,
    is_blank_file,
    load_json_document,
    type_name,
)
from data_tools.readers.chat import looks_like_eto
from data_tools.readers.react import has_action_line, iter_episodes
from openrlhf_act.errors import DataError

_HINT = "pass --format NAME"
_SNIFF_LINES = 100  # a .jsonl file whose first 100 non-blank lines all fail to decode is not JSONL
_SNIFF_EPISODES = 10  # Reflexion logs open with stubs ("Environment #0: Success") that hold no action


def format_of_record(value: Any, where: str) -> str:
    """The format of one decoded JSON record."""
    if type(value) is not dict:
        raise RecordError(
            f"cannot tell the format: the first record is {type_name(value)}, expected an object; {_HINT}",
            where,
            "unknown_format",
        )
    if "steps" in value:
        return "canonical"
    if "messages" in value:
        return "openai"
    if "conversations" in value:
        turns = value["conversations"]
        if not isinstance(turns, list):
            turns = []  # the reader will say what is wrong with it
        if "item_id" in value or any(isinstance(t, dict) and "loss" in t for t in turns):
            return "agentgym"
        return "eto" if looks_like_eto(turns) else "sharegpt"
    keys = ", ".join(sorted(value)[:8]) or "none"
    raise RecordError(
        f"cannot tell the format: the first record has keys [{keys}]; expected 'steps' (canonical), "
        f"'conversations' (eto, agentgym, sharegpt) or 'messages' (openai); {_HINT}",
        where,
        "unknown_format",
    )


def _non_blank_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as handle:
        for lineno, line in enumerate(handle, 1):
            if lineno == 1 and line.startswith(UTF8_BOM):
                line = line[3:]
            if line.strip():
                yield lineno, line


def _jsonl_format(lines: Iterator[tuple[int, bytes]], label: str) -> str:
    """The format of the first line that decodes; the first line's own error when none of the first
    :data:`_SNIFF_LINES` does."""
    errors: list[RecordError] = []
    for lineno, line in itertools.islice(lines, _SNIFF_LINES):
        value, error = decode_json_line(line, f"{label}:{lineno}")
        if error is None:
            return format_of_record(value, f"{label}:{lineno}")
        errors.append(error)
    raise errors[0]  # the file is not blank (checked first), so there is one


def sniff_format(path: Path, label: str) -> str | None:
    """The format of ``path``; None for a JSON array with no items.

    Raises :class:`RecordError` (with its reason) when the file cannot be read as any format."""
    if is_blank_file(path):
        raise empty_file_error(label)
    if path.suffix.lower() == ".json":
        document = load_json_document(path, label)
        if isinstance(document, list):
            return format_of_record(document[0], f"{label}: item 0") if document else None
        return format_of_record(document, label)
    lines = _non_blank_lines(path)
    if path.suffix.lower() == ".jsonl":
        return _jsonl_format(lines, label)
    lineno, line = next(lines)
    value, _ = decode_json_line(line, f"{label}:{lineno}")
    if isinstance(value, dict):
        return format_of_record(value, f"{label}:{lineno}")
    episodes = itertools.islice(iter_episodes(path, label), _SNIFF_EPISODES)
    if any(has_action_line(episode.value) for episode in episodes):
        return "react"
    raise RecordError(
        f"cannot tell the format: not JSON, and no '> command' or 'Action: command' line in the first "
        f"{_SNIFF_EPISODES} episodes; {_HINT}",
        f"{label}:{lineno}",
        "unknown_format",
    )


def detect_format(path: str | Path) -> str:
    """The format name of one file (see :data:`data_tools.readers.FORMATS`)."""
    fmt = sniff_format(Path(path), str(path))
    if fmt is None:
        raise DataError(f"cannot tell the format of an empty array; {_HINT}", str(path))
    return fmt
