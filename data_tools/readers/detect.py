"""Which format a file holds, decided from its first non-empty record (docs/formats.md, "Detection").

``.json``: the first item of the array (or the single object). ``.jsonl``: the first non-blank line,
which must be a JSON object. Any other name: JSON rules when the first non-blank line is a JSON
object, otherwise a ReAct transcript when its first episode has an action line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from data_tools.readers.base import UTF8_BOM, load_json_document, type_name
from data_tools.readers.chat import looks_like_eto
from data_tools.readers.react import has_action_line, iter_episodes
from openrlhf_act.schema import DataError

_HINT = "pass --format NAME"


def format_of_record(value: Any, where: str) -> str:
    """The format of one decoded JSON record."""
    if type(value) is not dict:
        raise DataError(
            f"cannot tell the format: the first record is {type_name(value)}, expected an object; {_HINT}", where
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
    raise DataError(
        f"cannot tell the format: the first record has keys [{keys}]; expected 'steps' (canonical), "
        f"'conversations' (eto, agentgym, sharegpt) or 'messages' (openai); {_HINT}",
        where,
    )


def _first_line(path: Path) -> tuple[int, bytes] | None:
    with open(path, "rb") as handle:
        for lineno, line in enumerate(handle, 1):
            if lineno == 1 and line.startswith(UTF8_BOM):
                line = line[3:]
            if line.strip():
                return lineno, line
    return None


def sniff_format(path: Path, label: str) -> str | None:
    """The format of ``path``; None for a file with no records. Raises :class:`DataError` when unsure."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            document = load_json_document(path, label)
        except DataError as exc:
            raise DataError(f"cannot tell the format: {exc.message}; {_HINT}", exc.where) from None
        if isinstance(document, list):
            return format_of_record(document[0], f"{label}: item 0") if document else None
        return format_of_record(document, label)
    first = _first_line(path)
    if first is None:
        return None
    lineno, line = first
    where = f"{label}:{lineno}"
    try:
        value = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        if suffix == ".jsonl":
            raise DataError(
                f"cannot tell the format: the first line is not valid JSON ({exc}); {_HINT}", where
            ) from None
        value = None
    if isinstance(value, dict) or suffix == ".jsonl":
        return format_of_record(value, where)
    episode = next(iter_episodes(path, label), None)
    if episode is not None and has_action_line(episode.value):
        return "react"
    raise DataError(
        f"cannot tell the format: not JSON, and no '> command' or 'Action: command' line in the first episode; {_HINT}",
        where,
    )


def detect_format(path: str | Path) -> str:
    """The format name of one file (see :data:`data_tools.readers.FORMATS`)."""
    fmt = sniff_format(Path(path), str(path))
    if fmt is None:
        raise DataError(f"cannot tell the format of an empty file; {_HINT}", str(path))
    return fmt
