"""Plain-text ReAct transcripts: observations alternating with actions (TextWorld / ALFWorld / WebShop logs).

An action is a line ``> command`` (TextWorld's prompt) or ``Action: command``; ``Action:`` followed
by a fenced block (```` ```sql ````, several lines) is the whole block, without the language tag.
Reasoning is never observation: ``> think: ...`` / ``Action: think[...]`` pseudo-actions (ReAct's
ALFWorld and WebShop prompts), ``Think: ...`` lines (ETO's copy of the ALFWorld prompts) and
``Thought: ...`` lines (continued until a blank line, the action or an ``Observation:`` line) are the
thought of the next action, and the "OK." (or "Observation: OK.") that answers a think action is not
an observation.
Every other line is observation text; an ``Observation:`` prefix, TextWorld banners (``-= ... =-``)
and Reflexion's ``Environment #N:`` header are dropped. The text before the first action is the
first observation and states the task ("Your task is to: ...", "Task: ...", WebShop's
"Instruction:" line, otherwise the whole opening is the task). A line "Here is the task." (ReAct,
Reflexion: after the instruction and the in-context example episodes) starts the episode afresh:
what came before it is prompt, not state. Lines after the last action are not a state, except
``Score: <number>``, ``Success: true|false`` and Reflexion's ``STATUS: OK|FAIL``, read as the outcome.

Several episodes per file are separated by a marker line, alone between blank lines (or the start
or end of the file): ``=== episode <optional task id> ===``, or Reflexion's ``#####``.

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

EPISODE_MARKER = re.compile(r"^(?:={3,}\s*episode\b\s*:?\s*(?P<id>[^=]*?)\s*={3,}|#{3,})\s*$", re.I)
ACTION_LINE = re.compile(r"^\s*(?:>\s*|action\s*\d*\s*[:：]\s*)(?P<command>.*?)\s*$", re.I)
_THOUGHT = re.compile(r"^\s*(?:thought|think)\s*\d*\s*[:：]\s*(?P<text>.*?)\s*$", re.I)
_THINK = re.compile(r"^think\s*(?::\s*(?P<colon>.*)|\[(?P<bracket>.*)\])$", re.I)
_THINK_REPLY = re.compile(r"^\s*(?:observation\s*\d*\s*:\s*)?(?:ok\.?)?\s*$", re.I)
_OBSERVATION_LABEL = re.compile(r"^\s*observation\s*\d*\s*[:：]", re.I)
_FENCE = re.compile(r"^\s*(?P<fence>`{3,}|~{3,})")
# ReAct / Reflexion: "Here is the task." after the instruction and the in-context examples.
_TASK_HEADER = re.compile(r"^\s*(?:now, it's your turn and )?here is the task\s*[.:]?\s*$", re.I)
_ENVIRONMENT_HEADER = re.compile(r"^\s*Environment\s*#\s*(?P<number>\d+)\s*:.*$", re.I)
_BANNER = re.compile(r"^\s*-=.*=-\s*$")
_SCORE = re.compile(r"^\s*(?:score|reward)\s*[:=]\s*(?P<value>-?\d+(?:\.\d+)?)\s*$", re.I)
_SUCCESS = re.compile(r"^\s*(?:success|status)\s*[:=]\s*(?P<value>true|false|yes|no|ok|fail)\s*$", re.I)


@dataclass(frozen=True, slots=True)
class TranscriptEpisode:
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
        episode = TranscriptEpisode(chunk[0][0], tuple(text for _, text, _ in chunk), marker_id)
        raw = "\n".join(episode.lines).strip("\n")
        yield Record(index, f"{label}:{content[0] if content else chunk[0][0]}", episode, raw, error)
        index += 1


def has_action_line(episode: TranscriptEpisode) -> bool:
    return any(ACTION_LINE.match(line) for line in episode.lines)


def _outcome(tail: list[str]) -> Outcome:
    score = success = None
    for line in tail:
        if m := _SCORE.match(line):
            score = float(m.group("value"))
        elif m := _SUCCESS.match(line):
            success = m.group("value").lower() in ("true", "yes", "ok")
    return Outcome(score, success)


def environment_number(episode: TranscriptEpisode) -> str | None:
    """N of Reflexion's "Environment #N:" header, when it is the episode's first line."""
    first = next((line for line in episode.lines if line.strip()), "")
    match = _ENVIRONMENT_HEADER.match(first)
    return match.group("number") if match else None


class _EpisodeParser:
    """Reads one episode line by line; see the module docstring for the rules."""

    def __init__(self, episode: TranscriptEpisode):
        self.episode = episode
        self.restart()

    def restart(self) -> None:
        """Forget everything so far: it was instructions and in-context examples."""
        self.steps: list[Step] = []
        self.observation: list[str] = []
        self.thought: list[str] = []
        self.opening: str | None = None
        self.in_thought = False
        self.after_think = False  # the environment answers a think action with "OK.", no observation

    def parse(self) -> tuple[str, list[Step], Outcome]:
        lines = self.episode.lines
        offset = 0
        while offset < len(lines):
            action = ACTION_LINE.match(lines[offset])
            if action:
                offset = self.action(action.group("command"), offset)
            else:
                self.text(lines[offset])
            offset += 1
        if self.opening is None:
            return extract_task("\n".join(self.observation)), [], Outcome()
        return extract_task(self.opening), self.steps, _outcome(self.observation)

    def action(self, command: str, offset: int) -> int:
        """Take the action on line ``offset``; returns the last line it used (a fenced block's end)."""
        self.in_thought = False
        think = _THINK.match(command)
        if think:
            self.thought.append((think.group("colon") or think.group("bracket") or "").strip())
            self.after_think = True
            return offset
        if not command and self.episode.lines[offset].lstrip().startswith(">"):  # a bare prompt, nothing typed
            return offset
        command, offset = self.fenced(command, offset)
        if not command:
            raise RecordError(f"line {self.episode.start_line + offset}: empty action", reason="bad_value")
        text = "\n".join(self.observation)
        if self.opening is None:
            self.opening = text
        observation, admissible = observation_parts(text)
        self.steps.append(Step(observation, command, "\n".join(self.thought).strip() or None, admissible))
        self.observation, self.thought, self.after_think = [], [], False
        return offset

    def fenced(self, command: str, offset: int) -> tuple[str, int]:
        """``Action:`` then a fenced block (on the same line or the next non-blank one): the block's
        lines are the command, without the language tag. Returns the command and its last line."""
        lines = self.episode.lines
        if command:
            start, opener = offset, command
        else:
            start = next((i for i in range(offset + 1, len(lines)) if lines[i].strip()), offset)
            opener = lines[start] if start > offset else ""
        fence = _FENCE.match(opener)
        if fence is None:
            return command, offset
        if start == offset and len(opener) > 6 and opener.endswith(fence.group("fence")):  # ```ls -la```
            return opener.strip("`~ "), offset
        for end in range(start + 1, len(lines)):
            if lines[end].strip() == fence.group("fence"):
                return "\n".join(lines[start + 1 : end]).strip(), end
        raise RecordError(
            f"line {self.episode.start_line + start}: the fenced action opened here is never closed", reason="bad_value"
        )

    def text(self, line: str) -> None:
        """A line that is no action: thought, a think reply, a header, or observation text."""
        thought = _THOUGHT.match(line)
        if thought:
            self.thought.append(thought.group("text"))
            self.in_thought = True
            return
        if self.in_thought and line.strip() and not _OBSERVATION_LABEL.match(line):
            self.thought.append(line.strip())
            return
        self.in_thought = False
        if self.after_think and _THINK_REPLY.match(line):
            return
        self.after_think = False
        if _TASK_HEADER.match(line):
            self.restart()
        elif not (_BANNER.match(line) or _ENVIRONMENT_HEADER.match(line)):
            self.observation.append(line)


def parse_episode(episode: TranscriptEpisode) -> tuple[str, list[Step], Outcome]:
    """(task, steps, outcome) of one transcript episode."""
    return _EpisodeParser(episode).parse()


class ReactReader(Reader):
    name = "react"
    summary = "plain-text ReAct transcripts: observations and '> cmd' / 'Action: cmd' lines; '=== episode ===' markers"
    json_records = False

    def records(self, path: Path, label: str) -> Iterator[Record]:
        return iter_episodes(path, label)

    def convert(self, record: Record, ctx: FileContext) -> Trajectory:
        episode: TranscriptEpisode = record.value
        task, steps, outcome = parse_episode(episode)
        number = environment_number(episode)
        task_id = episode.marker_id or (
            f"{ctx.path.stem}:env_{number}" if number else ctx.fallback_task_id(record.index)
        )
        env = resolve_env(None, ctx.env_override, (episode.marker_id, ctx.path.name), episode.lines[:40])
        return Trajectory(task_id, env, task, tuple(steps), outcome, {"format": self.name})
