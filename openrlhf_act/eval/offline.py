"""What the offline evaluations share: reading labelled prompt rows, what identifies a run, and
asking the policy in resumable chunks.

Both read the ``eval.jsonl`` files our data commands write (``prompt``: chat messages, ``label``: a
JSON string). Answers are appended to ``predictions.jsonl`` chunk by chunk, so a restarted run asks
only what is missing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from openrlhf_act import __version__
from openrlhf_act.actions import Completion
from openrlhf_act.errors import DataError, UsageError
from openrlhf_act.eval.policies import Policy
from openrlhf_act.files import RecordLog, read_jsonl, sha256_file
from openrlhf_act.sampling import SampleRequest

PREDICTIONS_FILE = "predictions.jsonl"

L = TypeVar("L")


@dataclass(frozen=True)
class Row:
    """One labelled prompt: its line number, chat messages, raw label and decoded label."""

    index: int
    messages: list[dict[str, str]]
    raw_label: Any
    label: Any


def read_rows(path: str | Path, decode: Callable[[Any], L], limit: int | None = None) -> list[Row]:
    """Rows of ``path``; a row without chat messages or with an unusable label is a :class:`DataError`."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path} does not exist")
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"not JSON ({exc.msg})", where) from None
            messages = data.get("prompt") if isinstance(data, dict) else None
            if not isinstance(messages, list) or not all(isinstance(m, dict) and "content" in m for m in messages):
                raise DataError("'prompt' must be a list of chat messages", where)
            try:
                label = decode(data.get("label"))
            except DataError as exc:
                raise DataError(exc.message, where) from None
            rows.append(Row(len(rows), messages, data.get("label"), label))
            if limit is not None and len(rows) >= limit:
                break
    if not rows:
        raise DataError("no rows", str(path))
    return rows


def data_identity(path: str | Path) -> dict[str, str]:
    return {"path": str(Path(path).resolve()), "sha256": sha256_file(path)}


def base_config(kind: str, data: str | Path, policy: Policy, seed: int) -> dict[str, Any]:
    return {
        "kind": kind,
        "data": data_identity(data),
        "policy": policy.describe(),
        "seed": seed,
        "version": __version__,
    }


def ask_missing(
    policy: Policy,
    requests: Sequence[tuple[str, SampleRequest]],
    log_path: Path,
    make_record: Callable[[str, Completion], dict[str, Any]],
    *,
    chunk_size: int,
    progress: bool,
    desc: str,
) -> dict[str, dict[str, Any]]:
    """Answer every ``(record id, request)`` that ``log_path`` does not hold yet, ``chunk_size`` at a
    time; ``make_record(record_id, completion)`` builds what is appended. Returns all records by id."""
    from tqdm import tqdm

    done = {r["id"]: r for r in read_jsonl(log_path, log=True)}
    missing = [(rid, req) for rid, req in requests if rid not in done]
    with (
        RecordLog(log_path) as log,
        tqdm(total=len(requests), initial=len(requests) - len(missing), desc=desc, disable=not progress) as bar,
    ):
        for start in range(0, len(missing), chunk_size):
            chunk = missing[start : start + chunk_size]
            responses = policy.respond([req for _, req in chunk])
            for (rid, _), response in zip(chunk, responses):
                record = {"id": rid, **make_record(rid, response)}
                log.append(record)
                done[rid] = record
            bar.update(len(chunk))
    return done


def pct(numerator: float, denominator: float) -> float | None:
    return 100.0 * numerator / denominator if denominator else None
