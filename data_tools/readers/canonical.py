"""Our own JSONL (``Trajectory.to_json()``), read back with strict types and nothing else.

This is the hot path of ``data build`` (benchmark 1): one ``json.loads`` per line, exact type checks
(``type(x) is str``), tuples, no regular expressions. Unknown keys are ignored; ``schema`` is optional
but, when present, must be ours; ``task_id`` and ``env`` are optional (file-stem fallback, override).
"""

from __future__ import annotations

from typing import Any

from data_tools.readers.base import FileContext, Reader, Record, RecordError, optional_bool, optional_number, type_name
from data_tools.readers.envtext import UNKNOWN_ENV, normalize_env
from openrlhf_act.schema import TRAJECTORY_SCHEMA, Outcome, Step, Trajectory

_NO_OUTCOME = Outcome()


def _bad(field: str, value: Any, expected: str) -> RecordError:
    if value is None:
        return RecordError(f"missing field '{field}' (expected {expected})", reason="missing_field")
    return RecordError(f"field '{field}' is {type_name(value)}, expected {expected}", reason="wrong_type")


def _step(raw: Any, i: int) -> Step:
    if type(raw) is not dict:
        raise _bad(f"steps[{i}]", raw, "an object")
    observation = raw.get("observation")
    action = raw.get("action")
    if type(observation) is not str:
        raise _bad(f"steps[{i}].observation", observation, "a string")
    if type(action) is not str:
        raise _bad(f"steps[{i}].action", action, "a string")
    if not action.strip():
        raise RecordError(f"field 'steps[{i}].action' is empty", reason="bad_value")
    thought = raw.get("thought")
    if thought is not None and type(thought) is not str:
        raise _bad(f"steps[{i}].thought", thought, "a string or null")
    admissible = raw.get("admissible")
    if admissible is not None:
        if type(admissible) is not list or not all(type(a) is str for a in admissible):
            raise _bad(f"steps[{i}].admissible", admissible, "an array of strings or null")
        admissible = tuple(admissible)
    reward = raw.get("reward")
    if reward is not None:
        reward = optional_number(raw, "reward", f"steps[{i}].")
    score = raw.get("score")
    if score is not None:
        score = optional_number(raw, "score", f"steps[{i}].")
    return Step(observation, action, thought, admissible, reward, score)


def _outcome(raw: Any) -> Outcome:
    if raw is None or raw == {}:
        return _NO_OUTCOME
    if type(raw) is not dict:
        raise _bad("outcome", raw, "an object")
    return Outcome(optional_number(raw, "score", "outcome."), optional_bool(raw, "success", "outcome."))


class CanonicalReader(Reader):
    name = "canonical"
    summary = "openrlhf-act canonical JSONL (Trajectory.to_json(), schema openrlhf-act/trajectory/v1)"

    def convert(self, record: Record, ctx: FileContext) -> Trajectory:
        obj: dict[str, Any] = record.value
        schema = obj.get("schema")
        if schema is not None and schema != TRAJECTORY_SCHEMA:
            raise RecordError(f"unsupported schema {schema!r} (expected {TRAJECTORY_SCHEMA!r})", reason="bad_value")
        task = obj.get("task")
        if type(task) is not str:
            raise _bad("task", task, "a string")
        steps = obj.get("steps")
        if type(steps) is not list:
            raise _bad("steps", steps, "an array of steps")
        task_id = obj.get("task_id")
        if task_id is None:
            task_id = ctx.fallback_task_id(record.index)
        elif type(task_id) is not str:
            raise _bad("task_id", task_id, "a string")
        env = obj.get("env")
        if env is None:
            env = normalize_env(ctx.env_override) if ctx.env_override else UNKNOWN_ENV
        elif type(env) is not str:
            raise _bad("env", env, "a string")
        else:
            env = normalize_env(env)
        meta = obj.get("meta")
        if meta is None:
            meta = {}
        elif type(meta) is not dict:
            raise _bad("meta", meta, "an object")
        return Trajectory(
            task_id,
            env,
            task,
            tuple([_step(raw, i) for i, raw in enumerate(steps)]),
            _outcome(obj.get("outcome")),
            meta,
        )
