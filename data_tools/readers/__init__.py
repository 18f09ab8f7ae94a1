"""Trajectory readers: public trajectory formats in, :class:`openrlhf_act.schema.Trajectory` out.

Formats (docs/formats.md): ``canonical`` (our JSONL), ``eto``, ``agentgym``, ``openai``, ``sharegpt``,
``react`` (plain-text transcripts). ``.jsonl`` files are streamed line by line; ``.json`` files hold
one array (or one object) and are loaded whole; any other file is a plain-text transcript unless its
first line is a JSON object. Record-level problems follow ``on_error``: ``"fail"`` raises the first
:class:`~openrlhf_act.errors.DataError` (located ``file:line`` or ``file: item N``), ``"skip"`` sets
the record aside in ``rejects``, counts it in ``stats`` and goes on. A file that cannot be read at all
(blank, not UTF-8 or not JSON where JSON is required, or of no known shape) is one bad record under the
same policy. A missing file or an unknown format name always raises.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from data_tools.readers.agentgym import AgentGymReader
from data_tools.readers.base import (
    FileContext,
    FileCounters,
    Reader,
    ReaderStats,
    Record,
    RecordError,
    RejectSink,
    empty_file_error,
    is_blank_file,
    type_name,
)
from data_tools.readers.canonical import CanonicalReader
from data_tools.readers.detect import detect_format, sniff_format
from data_tools.readers.eto import EtoReader
from data_tools.readers.openai import OpenAIReader
from data_tools.readers.react import ReactReader
from data_tools.readers.sharegpt import ShareGPTReader
from openrlhf_act.errors import DataError
from openrlhf_act.schema import Trajectory

FORMATS: dict[str, Reader] = {
    reader.name: reader
    for reader in (CanonicalReader(), EtoReader(), AgentGymReader(), OpenAIReader(), ShareGPTReader(), ReactReader())
}
ON_ERROR = ("fail", "skip")

__all__ = ["FORMATS", "ON_ERROR", "Reader", "ReaderStats", "RejectSink", "detect_format", "read_trajectories"]


def read_trajectories(
    paths: Sequence[str | Path],
    fmt: str = "auto",
    *,
    env: str | None = None,
    on_error: str = "fail",
    rejects: RejectSink | None = None,
    stats: ReaderStats | None = None,
) -> Iterator[Trajectory]:
    """Yield the trajectories of ``paths`` in order, lazily.

    ``fmt="auto"`` detects each file's format on its own. ``env`` names the environment of records
    that do not carry one (the record's own ``env`` wins; otherwise it is inferred, or ``unknown``).
    Trajectories with no expert step are skipped and counted in ``stats.skipped_empty``.
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, not {on_error!r}")
    if fmt != "auto" and fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}; known: auto, {', '.join(FORMATS)}")
    return _read(paths, fmt, env, on_error == "skip", rejects, stats if stats is not None else ReaderStats())


def _read(
    paths: Sequence[str | Path],
    fmt: str,
    env: str | None,
    skip: bool,
    rejects: RejectSink | None,
    stats: ReaderStats,
) -> Iterator[Trajectory]:
    for given in paths:
        path, label = Path(given), str(given)
        if not path.is_file():
            raise DataError("no such file" if not path.exists() else "not a regular file", label)
        try:
            name = _file_format(path, label, fmt)
        except RecordError as error:  # the whole file is unreadable: it is the one bad record
            counters = stats.open_file(label, None)
            counters.records += 1
            _reject(counters, Record(0, error.where or label, None), error, skip, rejects)
            continue
        counters = stats.open_file(label, name)
        if name is not None:
            yield from _read_file(FORMATS[name], FileContext(path, env), label, counters, skip, rejects)


def _file_format(path: Path, label: str, fmt: str) -> str | None:
    """The format to read ``path`` with (None: an empty JSON array); raises for an unreadable file."""
    if fmt == "auto":
        return sniff_format(path, label)
    if is_blank_file(path):
        raise empty_file_error(label)
    return fmt


def _read_file(
    reader: Reader, ctx: FileContext, label: str, counters: FileCounters, skip: bool, rejects: RejectSink | None
) -> Iterator[Trajectory]:
    for record in reader.records(ctx.path, label):
        counters.records += 1
        error = record.error
        if error is None:
            try:
                if reader.json_records and type(record.value) is not dict:
                    raise RecordError(f"expected a JSON object, got {type_name(record.value)}", reason="not_object")
                trajectory = reader.convert(record, ctx)
            except RecordError as exc:
                error = exc.at(record.where)
        if error is not None:
            _reject(counters, record, error, skip, rejects)
            continue
        if not trajectory.steps:
            counters.skipped_empty += 1
            continue
        counters.trajectories += 1
        counters.steps += len(trajectory.steps)
        yield trajectory


def _reject(counters: FileCounters, record: Record, error: RecordError, skip: bool, rejects: RejectSink | None) -> None:
    """``on_error="fail"``: raise; ``"skip"``: count the record under its reason and set it aside."""
    if not skip:
        raise error
    counters.rejected[error.reason] += 1
    if rejects is not None:
        rejects.add(record, error)
