"""The one home of our files: atomic JSON lines, the append-only log a crash cannot corrupt, and the
settings a run directory resumes under."""

from __future__ import annotations

import json

import pytest

from openrlhf_act.errors import UsageError
from openrlhf_act.files import RecordLog, open_run_dir, read_jsonl, write_jsonl


def test_jsonl_round_trip_is_atomic(tmp_path):
    path = tmp_path / "out" / "rows.jsonl"
    assert write_jsonl(path, [{"a": "é"}, [1, 2]]) == 2
    assert path.read_text(encoding="utf-8") == '{"a":"é"}\n[1,2]\n'
    assert list(read_jsonl(path)) == [{"a": "é"}, [1, 2]]
    with pytest.raises(RuntimeError):
        write_jsonl(path, ({"b": 1} if i == 0 else _fail() for i in range(2)))
    assert list(read_jsonl(path)) == [{"a": "é"}, [1, 2]], "a failed write keeps the previous file"
    assert not list(path.parent.glob("*.tmp"))
    path.write_text('{"a": 1}\nnot json\n')
    with pytest.raises(json.JSONDecodeError):
        list(read_jsonl(path))


def _fail():
    raise RuntimeError("interrupted")


def test_record_log_survives_a_torn_line(tmp_path):
    path = tmp_path / "log.jsonl"
    assert list(read_jsonl(path, log=True)) == []
    with RecordLog(path) as log:
        log.append({"id": 1})
        log.extend([{"id": 2}, {"id": 3}])
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"id": 4, "cut sh')  # a crash mid-line
    assert [r["id"] for r in read_jsonl(path, log=True)] == [1, 2, 3]
    with RecordLog(path) as log:  # reopening drops the torn line, so the next record stands alone
        log.append({"id": 5})
    assert [r["id"] for r in read_jsonl(path, log=True)] == [1, 2, 3, 5]


def test_run_directory_resumes_only_under_the_same_settings(tmp_path):
    settings = {"kind": "judgment", "seed": 0, "version": "1"}
    open_run_dir(tmp_path / "run", settings)
    open_run_dir(tmp_path / "run", {**settings, "version": "2"})  # a newer package may finish the run
    with pytest.raises(UsageError, match="different seed"):
        open_run_dir(tmp_path / "run", {**settings, "seed": 1})
    assert json.loads((tmp_path / "run" / "run.json").read_text())["version"] == "1"
