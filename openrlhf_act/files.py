"""Our files: atomic outputs, JSON lines, append-only logs that survive crashes, run directories.

Every output is written to ``<name>.tmp`` next to its destination and renamed into place only when
complete; a failed or interrupted run leaves the previous file (or none) and removes its temporary.
Work that is resumed (evaluation answers and episodes, sampled completions, collected episodes) is
appended to a :class:`RecordLog` the moment it is done instead, so a crash loses at most the work in
flight. JSON lines are written by :func:`write_rows` and read by :func:`read_jsonl`, nowhere else.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from openrlhf_act.errors import UsageError
from openrlhf_act.redaction import comparable, redact, redact_text

logger = logging.getLogger(__name__)
RUN_FILE = "run.json"


def dumps(obj: Any) -> str:
    """One canonical JSON encoding for every row we write (stable bytes for stable inputs)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open ``path.tmp`` for writing; on success fsync and rename over ``path``, else delete it."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(final.name + ".tmp")
    handle = open(tmp, mode, encoding=None if "b" in mode else "utf-8")  # noqa: SIM115 - closed below
    try:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        os.replace(tmp, final)
    except BaseException:
        handle.close()
        tmp.unlink(missing_ok=True)
        raise


def write_rows(out: IO[str], rows: Iterable[Any]) -> int:
    """Write rows to an open file as JSON lines; return how many."""
    count = 0
    for row in rows:
        out.write(dumps(row) + "\n")
        count += 1
    return count


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> int:
    """Write rows atomically; return how many."""
    with atomic_open(path) as out:
        return write_rows(out, rows)


def write_json(path: str | Path, obj: Any) -> None:
    """A manifest, run settings or summary: indented, keys sorted, so two runs diff cleanly. Every
    settings file goes through here, so secrets are redacted here (:mod:`openrlhf_act.redaction`)."""
    with atomic_open(path) as out:
        json.dump(redact(obj), out, ensure_ascii=False, indent=2, sort_keys=True)
        out.write("\n")


def write_text(path: str | Path, text: str) -> None:
    """A report or summary in text (credentials in it redacted, as in :func:`write_json`)."""
    with atomic_open(path) as out:
        out.write(redact_text(text))


def read_jsonl(path: str | Path, *, log: bool = False) -> Iterator[Any]:
    """Our own JSON lines, read back (inputs from users go through ``data_tools.readers``).

    ``log``: ``path`` is a :class:`RecordLog` a crash may have cut: a missing file holds nothing, and
    the line a crash cut short or any unreadable line is skipped with a warning instead of raising.
    """
    path = Path(path)
    if log and not path.exists():
        return
    with open(path, encoding="utf-8", errors="replace" if log else "strict") as handle:
        for number, line in enumerate(handle, 1):
            if log and not line.endswith("\n"):
                logger.warning("%s:%d: dropping a record cut short by an interrupted run", path, number)
                return
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if not log:
                    raise
                logger.warning("%s:%d: skipping an unreadable record", path, number)
                continue
            yield record


class RecordLog:
    """Append-only JSON lines; every :meth:`append` / :meth:`extend` is on disk when it returns.

    Opening drops a line cut short by a crash, so the next append never glues onto it. Read the log
    back with ``read_jsonl(path, log=True)``.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._drop_partial_tail()
        self._handle: IO[str] = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def _drop_partial_tail(self) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as handle:
            data = handle.read()
            if data.endswith(b"\n"):
                return
            handle.truncate(data.rfind(b"\n") + 1)

    def append(self, record: Any) -> None:
        self.extend([record])

    def extend(self, records: Iterable[Any]) -> None:
        """Append several records with one flush and fsync."""
        write_rows(self._handle, records)
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> RecordLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_run_dir(out_dir: str | Path, settings: dict[str, Any]) -> None:
    """Create a run directory that records ``settings`` in ``run.json``, or check that an existing one
    holds a run of the same settings, so a resumed run never mixes the results of two. ``version`` is
    recorded, not compared: a newer package may finish a run an older one started. Secrets are recorded
    redacted and not compared: a rotated API key resumes the run."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / RUN_FILE
    if not path.exists():
        write_json(path, settings)
        return
    old, settings = comparable(json.loads(path.read_text(encoding="utf-8"))), comparable(redact(settings))
    keys = dict.fromkeys([*settings, *old])  # a setting only one of the two records differs too
    changed = [key for key in keys if key != "version" and old.get(key) != settings.get(key)]
    if changed:
        raise UsageError(
            f"{out} holds a run with different {', '.join(changed)}; "
            "use a new output directory (or the same settings to resume)"
        )


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
