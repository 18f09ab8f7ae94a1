"""Trajectory readers: public trajectory formats in, :class:`openrlhf_act.schema.Trajectory` out.

Formats (docs/formats.md): ``canonical`` (our JSONL), ``eto``, ``agentgym``, ``openai``, ``sharegpt``,
``react`` (plain-text transcripts). ``.jsonl`` files are streamed line by line; ``.json`` files hold
one array (or one object) and are loaded whole; any other file is a plain-text transcript unless its
first line is a JSON object. Record-level problems follow ``on_error``: ``"fail"`` raises the first
:class:`~openrlhf_act.schema.DataError` (located ``file:line`` or ``file: item N``), ``"skip"`` sets
the record aside in ``rejects``, counts it in ``stats`` and goes on. File-level problems (missing
file, unknown format) always raise.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from data_tools.readers.agentgym import AgentGymReader
from data_tools.readers.base import FileContext, Reader, ReaderStats, RecordError, RejectSink, type_name
from data_tools.readers.canonical import CanonicalReader
from data_tools.readers.detect import detect_format, sniff_format
from data_tools.readers.eto import EtoReader
from data_tools.readers.openai import OpenAIReader
from data_tools.readers.react import ReactReader
from data_tools.readers.sharegpt import ShareGPTReader
from openrlhf_act.schema import DataError, Trajectory

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
        name = sniff_format(path, label) if fmt == "auto" else fmt
        counters = stats.open_file(label, name)
        if name is None:  # an empty file: nothing to read
            continue
        reader = FORMATS[name]
        ctx = FileContext(path, env)
        for record in reader.records(path, label):
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
                if not skip:
                    raise error
                counters.rejected[error.reason] += 1
                if rejects is not None:
                    rejects.add(record, error)
                continue
            if not trajectory.steps:
                counters.skipped_empty += 1
                continue
            counters.trajectories += 1
            counters.steps += len(trajectory.steps)
            yield trajectory
