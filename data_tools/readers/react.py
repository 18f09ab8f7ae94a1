"""Plain-text ReAct transcripts: observations alternating with actions (TextWorld / ALFWorld logs).

An action is a line ``> command`` (TextWorld's prompt) or ``Action: command``. ``> think: ...`` lines
(ALFWorld ReAct prompts) and ``Thought: ...`` lines (continued until a blank line or the action) are
the thought of the next action; the "OK." that answers a think line is not an observation. Every
other line is observation text; an ``Observation:`` prefix and TextWorld banners (``-= ... =-``) are
dropped. The text before the first action is the first observation and states the task
("Your task is to: ...", "Task: ...", otherwise the whole opening is the task). Lines after the last
action are not a state, except ``Score: <number>`` and ``Success: true|false``, read as the outcome.

Several episodes per file are separated by a marker line, alone between blank lines (or the start
or end of the file)::

    === episode <optional task id> ===

Files are streamed line by line; each line must be UTF-8.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from data_tools.readers.base import UTF8_BOM, FileContext, Reader, Record, RecordError
from data_tools.readers.envtext import extract_task, observation_parts, resolve_env
from openrlhf_act.schema import Outcome, Step, Trajectory

EPISODE_MARKER = re.compile(r"^={3,}\s*episode\b\s*:?\s*(?P<id>[^=]*?)\s*={3,}\s*$", re.I)
ACTION_LINE = re.compile(r"^\s*(?:>\s*|action\s*\d*\s*[:：]\s*)(?P<command>.*?)\s*$", re.I)
_THOUGHT = re.compile(r"^\s*thought\s*\d*\s*[:：]\s*(?P<text>.*?)\s*$", re.I)
_THINK = re.compile(r"^think\s*:\s*", re.I)
_BANNER = re.compile(r"^\s*-=.*=-\s*$")
_SCORE = re.compile(r"^\s*(?:score|reward)\s*[:=]\s*(?P<value>-?\d+(?:\.\d+)?)\s*$", re.I)
_SUCCESS = re.compile(r"^\s*success\s*[:=]\s*(?P<value>true|false|yes|no)\s*$", re.I)


@dataclass(frozen=True, slots=True)
class Episode:
    """The lines of one episode, the line number of its first line, and the marker's task id."""

    start_line: int
    lines: tuple[str, ...]
    marker_id: str | None


def _numbered_lines(path: Path, label: str) -> Iterator[tuple[int, str, RecordError | None]]:
    """(line number, text, error): a line that is not UTF-8 comes with its error and an escaped text."""
    with open(path, "rb") as handle:
        for lineno, raw in enumerate(handle, 1):
            if lineno == 1 and raw.startswith(UTF8_BOM):
                raw = raw[3:]
            try:
                yield lineno, raw.decode("utf-8").rstrip("\r\n"), None
            except UnicodeDecodeError as exc:
                error = RecordError(
                    f"not valid UTF-8 (byte offset {exc.start} in the line)", f"{label}:{lineno}", "not_utf8"
                )
                yield lineno, raw.decode("utf-8", "backslashreplace").rstrip("\r\n"), error


Chunk = list[tuple[int, str, RecordError | None]]


def _chunks(numbered: Iterator[tuple[int, str, RecordError | None]]) -> Iterator[tuple[str | None, Chunk]]:
    """Split at marker lines that stand alone between blank lines; yields (marker id, lines)."""
    marker_id: str | None = None
    chunk: Chunk = []
    previous_blank = True
    candidate: tuple[tuple[int, str, RecordError | None], str | None] | None = None
    for line in numbered:
        blank = line[2] is None and not line[1].strip()
        if candidate is not None:
            if blank:
                yield marker_id, chunk
                marker_id, chunk = candidate[1], []
            else:
                chunk.append(candidate[0])
            candidate = None
        match = EPISODE_MARKER.match(line[1]) if previous_blank and line[2] is None else None
        if match:
            candidate = (line, match.group("id") or None)
        else:
            chunk.append(line)
        previous_blank = blank
    yield marker_id, chunk  # a marker on the very last line only closes the episode before it


def iter_episodes(path: Path, label: str) -> Iterator[Record]:
    """One record per episode; an episode with a non-UTF-8 line carries that line's error."""
    index = 0
    for marker_id, chunk in _chunks(_numbered_lines(path, label)):
        error = next((e for _, _, e in chunk if e is not None), None)
        content = [n for n, text, _ in chunk if text.strip()]
        if not content and error is None:
            continue
        episode = Episode(chunk[0][0], tuple(text for _, text, _ in chunk), marker_id)
        raw = "\n".join(episode.lines).strip("\n")
        yield Record(index, f"{label}:{content[0] if content else chunk[0][0]}", episode, raw, error)
        index += 1


def has_action_line(episode: Episode) -> bool:
    return any(ACTION_LINE.match(line) for line in episode.lines)


def _outcome(tail: list[str]) -> Outcome:
    score = success = None
    for line in tail:
        if m := _SCORE.match(line):
            score = float(m.group("value"))
        elif m := _SUCCESS.match(line):
            success = m.group("value").lower() in ("true", "yes")
    return Outcome(score, success)


def parse_episode(episode: Episode) -> tuple[str, list[Step], Outcome]:
    """(task, steps, outcome) of one transcript episode."""
    steps: list[Step] = []
    observation: list[str] = []
    thought: list[str] = []
    in_thought = False
    after_think = False  # the environment answers "> think: ..." with "OK.", which is no observation
    opening: str | None = None
    for offset, line in enumerate(episode.lines):
        action = ACTION_LINE.match(line)
        if action:
            command = action.group("command")
            in_thought = False
            if _THINK.match(command):
                thought.append(_THINK.sub("", command, count=1))
                after_think = True
                continue
            if not command:
                if line.lstrip().startswith(">"):  # a bare prompt, nothing typed
                    continue
                raise RecordError(f"line {episode.start_line + offset}: empty action", reason="bad_value")
            text = "\n".join(observation)
            if opening is None:
                opening = text
            obs, admissible = observation_parts(text)
            steps.append(Step(obs, command, "\n".join(thought).strip() or None, admissible))
            observation, thought, after_think = [], [], False
            continue
        thought_line = _THOUGHT.match(line)
        if thought_line:
            thought.append(thought_line.group("text"))
            in_thought = True
            continue
        if in_thought and line.strip():
            thought.append(line.strip())
            continue
        in_thought = False
        if after_think and line.strip() in ("", "OK", "OK."):
            continue
        after_think = False
        if not _BANNER.match(line):
            observation.append(line)
    if opening is None:
        return extract_task("\n".join(observation)), [], Outcome()
    return extract_task(opening), steps, _outcome(observation)


class ReactReader(Reader):
    name = "react"
    summary = "plain-text ReAct transcripts: observations and '> cmd' / 'Action: cmd' lines; '=== episode ===' markers"
    json_records = False

    def records(self, path: Path, label: str) -> Iterator[Record]:
        return iter_episodes(path, label)

    def convert(self, record: Record, ctx: FileContext) -> Trajectory:
        episode: Episode = record.value
        task, steps, outcome = parse_episode(episode)
        task_id = episode.marker_id or ctx.fallback_task_id(record.index)
        env = resolve_env(None, ctx.env_override, (episode.marker_id, ctx.path.name), episode.lines[:40])
        return Trajectory(task_id, env, task, tuple(steps), outcome, {"format": self.name})
