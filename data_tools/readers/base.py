"""What every reader shares: raw records, typed errors, field checks, counters and the rejects file.

A reader cuts a file into :class:`Record` objects (``records``) and turns one record into a
:class:`Trajectory` (``convert``). The driver in ``data_tools.readers`` owns the error policy and the
counting, so converters only raise :class:`RecordError`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openrlhf_act.errors import DataError
from openrlhf_act.files import write_jsonl
from openrlhf_act.schema import Outcome, Trajectory

UTF8_BOM = b"\xef\xbb\xbf"
MAX_RAW_CHARS = 20_000
_TYPE_NAMES = {dict: "object", list: "array", str: "string", type(None): "null"}


def type_name(value: Any) -> str:
    """JSON names for containers and strings, Python names for scalars (``int``, ``bool``)."""
    return _TYPE_NAMES.get(type(value)) or type(value).__name__


class RecordError(DataError):
    """A bad record; ``reason`` is the short category counted in :attr:`ReaderStats.rejected`."""

    def __init__(self, message: str, where: str | None = None, reason: str = "bad_value"):
        super().__init__(message, where)
        self.reason = reason

    def at(self, where: str) -> RecordError:
        """This error placed at ``where``, unless it already names a place of its own."""
        return self if self.where else RecordError(self.message, where, self.reason)


@dataclass(frozen=True, slots=True)
class Record:
    """One raw record: its 0-based index in the file, where it is, the decoded value and the original
    text (``raw``, for the rejects file; None for ``.json`` items, re-serialized only when rejected).
    ``error`` is set when the record could not even be decoded."""

    index: int
    where: str
    value: Any
    raw: str | None = None
    error: RecordError | None = None


class FileContext:
    """What a converter may need to know about the file it reads."""

    __slots__ = ("env_override", "path")

    def __init__(self, path: Path, env_override: str | None):
        self.path = path
        self.env_override = env_override

    def fallback_task_id(self, index: int) -> str:
        """``<file stem>:<record index>`` for records that carry no id."""
        return f"{self.path.stem}:{index}"


def _decode_error(exc: UnicodeDecodeError, where: str) -> RecordError:
    return RecordError(f"not valid UTF-8 (byte offset {exc.start} in the line)", where, "not_utf8")


def _json_error(exc: json.JSONDecodeError, where: str) -> RecordError:
    return RecordError(f"invalid JSON: {exc.msg} (column {exc.colno})", where, "bad_json")


def decode_json_line(line: bytes, where: str) -> tuple[Any, RecordError | None]:
    """One JSONL line decoded, or None and the error that says why it cannot be."""
    try:
        return json.loads(line.decode("utf-8")), None
    except UnicodeDecodeError as exc:
        return None, _decode_error(exc, where)
    except json.JSONDecodeError as exc:
        return None, _json_error(exc, where)


def jsonl_records(path: Path, label: str) -> Iterator[Record]:
    """One record per non-blank line, decoded lazily: the file is never read ahead."""
    index = 0
    with open(path, "rb") as handle:
        for lineno, line in enumerate(handle, 1):
            if lineno == 1 and line.startswith(UTF8_BOM):
                line = line[3:]
            if not line.strip():
                continue
            where = f"{label}:{lineno}"
            value, error = decode_json_line(line, where)
            yield Record(index, where, value, line.decode("utf-8", "backslashreplace"), error)
            index += 1


def empty_file_error(label: str) -> RecordError:
    return RecordError("empty file: no records to read", label, "empty_file")


def is_blank_file(path: Path) -> bool:
    """True when the file holds nothing but whitespace (read only up to the first other byte)."""
    with open(path, "rb") as handle:
        block = handle.read(1 << 16).removeprefix(UTF8_BOM)
        while block:
            if block.strip():
                return False
            block = handle.read(1 << 16)
    return True


def load_json_document(path: Path, label: str) -> Any:
    """A whole ``.json`` file (ETO and AgentGym ship one array); errors name the line. (A blank file is
    reported before, see :func:`is_blank_file`.)"""
    data = path.read_bytes()
    if data.startswith(UTF8_BOM):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        lineno = data.count(b"\n", 0, exc.start) + 1
        raise RecordError(
            f"not valid UTF-8 (byte offset {exc.start - line_start} in the line)", f"{label}:{lineno}", "not_utf8"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _json_error(exc, f"{label}:{exc.lineno}") from None


def json_document_records(path: Path, label: str) -> Iterator[Record]:
    """The items of a ``.json`` array (``file: item N``, 0-based), or its single top-level value."""
    try:
        document = load_json_document(path, label)
    except RecordError as exc:  # the whole file is one bad record
        yield Record(0, exc.where or label, None, None, exc)
        return
    if type(document) is list:
        for index, item in enumerate(document):
            yield Record(index, f"{label}: item {index}", item)
    else:
        yield Record(0, label, document)


class Reader:
    """One input format. JSON formats inherit :meth:`records`; the transcript reader overrides it."""

    name = ""
    summary = ""
    json_records = True  # records must be JSON objects (checked by the driver)

    def records(self, path: Path, label: str) -> Iterator[Record]:
        """``.json`` files are loaded whole; any other file is read as JSONL, line by line."""
        if path.suffix.lower() == ".json":
            return json_document_records(path, label)
        return jsonl_records(path, label)

    def convert(self, record: Record, ctx: FileContext) -> Trajectory:
        raise NotImplementedError


def _bad_field(label: str, value: Any, expected: str) -> RecordError:
    return RecordError(f"field '{label}' is {type_name(value)}, expected {expected}", reason="wrong_type")


def optional_number(obj: dict[str, Any], key: str, prefix: str = "") -> int | float | None:
    """A number or None; ``true`` is not a number."""
    value = obj.get(key)
    if value is None or (type(value) in (int, float)):
        return value
    raise _bad_field(prefix + key, value, "a number")


def optional_bool(obj: dict[str, Any], key: str, prefix: str = "") -> bool | None:
    value = obj.get(key)
    if value is None or type(value) is bool:
        return value
    raise _bad_field(prefix + key, value, "true or false")


def optional_id(obj: dict[str, Any], *keys: str) -> str | None:
    """The first id key present, as a string; ETO writes some ids as integers."""
    for key in keys:
        value = obj.get(key)
        if value is None:
            continue
        if type(value) is str or type(value) is int:
            return str(value)
        raise _bad_field(key, value, "a string or integer id")
    return None


def outcome_of(obj: dict[str, Any]) -> Outcome:
    """``outcome{score,success}``, else top-level ``score``/``reward``/``success``, else ETO's
    ``meta{reward,success}``; the first value found wins."""
    score = success = None
    for prefix, place in (("outcome.", obj.get("outcome")), ("", obj), ("meta.", obj.get("meta"))):
        if type(place) is not dict:
            continue
        for key in ("score", "reward"):
            if score is None:
                score = optional_number(place, key, prefix)
        if success is None:
            success = optional_bool(place, "success", prefix)
    return Outcome(score, success)


@dataclass
class FileCounters:
    """What one input file gave; ``format`` is None for an empty file."""

    format: str | None
    records: int = 0
    trajectories: int = 0
    steps: int = 0
    skipped_empty: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "records": self.records,
            "trajectories": self.trajectories,
            "steps": self.steps,
            "skipped_empty": self.skipped_empty,
            "rejected": dict(sorted(self.rejected.items())),
        }


class ReaderStats:
    """Counters for one run of :func:`read_trajectories`, in total and per file."""

    def __init__(self) -> None:
        self.files: dict[str, FileCounters] = {}

    def open_file(self, label: str, fmt: str | None) -> FileCounters:
        counters = self.files.get(label)
        if counters is None or counters.format != fmt:
            counters = self.files[label] = FileCounters(fmt)
        return counters

    @property
    def records(self) -> int:
        return sum(f.records for f in self.files.values())

    @property
    def trajectories(self) -> int:
        return sum(f.trajectories for f in self.files.values())

    @property
    def steps(self) -> int:
        return sum(f.steps for f in self.files.values())

    @property
    def skipped_empty(self) -> int:
        return sum(f.skipped_empty for f in self.files.values())

    @property
    def rejected(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for counters in self.files.values():
            total.update(counters.rejected)
        return total

    def to_json(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "trajectories": self.trajectories,
            "steps": self.steps,
            "skipped_empty": self.skipped_empty,
            "rejected": dict(sorted(self.rejected.items())),
            "files": {label: counters.to_json() for label, counters in self.files.items()},
        }


class RejectSink:
    """Bad records set aside by ``on_error="skip"``; :meth:`write` saves them as JSONL.

    ``raw`` is the record's original text; text longer than ``max_raw_chars`` is cut and ends with a
    note saying how long it was.
    """

    def __init__(self, max_raw_chars: int = MAX_RAW_CHARS):
        self.max_raw_chars = max_raw_chars
        self.rows: list[dict[str, Any]] = []

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, record: Record, error: DataError) -> None:
        raw = record.raw
        if raw is None and record.value is not None:
            raw = json.dumps(record.value, ensure_ascii=False)
        if raw is not None:
            raw = raw.rstrip("\r\n")
            if len(raw) > self.max_raw_chars:
                raw = f"{raw[: self.max_raw_chars]}... [truncated: {len(raw)} characters in all]"
        self.rows.append({"where": error.where or record.where, "error": error.message, "raw": raw})

    def write(self, path: str | Path) -> int:
        """Write every reject atomically (``{"where", "error", "raw"}`` per line); return how many."""
        return write_jsonl(path, self.rows)
