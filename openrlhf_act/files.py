"""Atomic outputs: nothing partial is ever left under a final name.

Every output is written to ``<name>.tmp`` next to its destination and renamed into place only when
complete; a failed or interrupted run leaves the previous file (or none) and removes its temporary.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any


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


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> int:
    """Write rows atomically; return how many."""
    count = 0
    with atomic_open(path) as out:
        for row in rows:
            out.write(dumps(row))
            out.write("\n")
            count += 1
    return count


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_open(path) as out:
        json.dump(obj, out, ensure_ascii=False, indent=2, sort_keys=True)
        out.write("\n")


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Our own outputs, read back (inputs from users go through ``data_tools.readers``)."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
