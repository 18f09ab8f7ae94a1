"""Files of an evaluation run: append-only JSONL records that survive crashes, atomic summaries.

A record is appended (and fsynced) the moment its episode or chunk finishes, so a crash loses at
most the work in flight. A line cut short by a crash is dropped when the file is reopened, so the
next append never glues onto it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import IO, Any

from openrlhf_act.files import atomic_open, dumps

logger = logging.getLogger(__name__)


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Every complete JSON line of ``path`` (none when it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.endswith("\n"):
                logger.warning("%s:%d: dropping a record cut short by an interrupted run", path, number)
                break
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    logger.warning("%s:%d: skipping an unreadable record", path, number)
    return records


class RecordLog:
    """Append-only JSONL; every :meth:`append` is on disk when it returns."""

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

    def append(self, record: dict[str, Any]) -> None:
        self._handle.write(dumps(record) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> RecordLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_open(path) as out:
        json.dump(obj, out, ensure_ascii=False, indent=2, sort_keys=True)
        out.write("\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_open(path) as out:
        out.write(text)


def stable_seed(*parts: Any) -> int:
    """A seed from identifiers, stable across processes and Python versions (``hash`` is salted)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little")
