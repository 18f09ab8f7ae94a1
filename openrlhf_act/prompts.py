"""Prompt rendering: pure functions of a state (and candidates).

One agent prompt serves sampling alternatives, the IL/RL/DPO data and evaluation, so a model is
trained and tested on exactly the prompt it was sampled with. The judgment prompt shows the same
state followed by the numbered candidates.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from typing import NamedTuple

from openrlhf_act.schema import JUDGE_REASONING, JudgmentLabel, State

DEFAULT_MAX_ADMISSIBLE_IN_PROMPT = 50
ENV_TITLES = {"scienceworld": "ScienceWorld", "alfworld": "ALFWorld", "webshop": "WebShop", "textworld": "TextWorld"}

AGENT_SYSTEM = (
    "You are an agent acting in the text environment {env}. At every turn you see the task, the "
    "recent history and the current observation. You may reason first; then end your reply with "
    "exactly one line of the form\nAction: <command>"
)
AGENT_INSTRUCTION = 'What is your next action? End your reply with one line "Action: <command>".'
# The next observation after a reply that named no action (evaluation and the online executor send
# nothing to the environment then).
NO_ACTION_FEEDBACK = 'No action was recognised. End your reply with one line of the form "Action: <command>".'

JUDGE_SYSTEM = (
    "You are an expert agent in the text environment {env}. You are shown the task, the recent "
    "history, the current observation and {k} candidate next actions. Decide which candidate is "
    "better for accomplishing the task."
)
JUDGE_INSTRUCTION = (
    "Which action is better for the task?\n{candidates}\n\nThink about what each action leads to, "
    "then give your final verdict as <{tag}>Action k</{tag}>, where k is the number of the better action."
)
# The no-reasoning control (``data build --judge-reasoning none``, ``eval judgment --rationale none``):
# the same question, the verdict alone asked for; the reward then counts any reasoning as malformed.
JUDGE_INSTRUCTION_VERDICT_ONLY = (
    "Which action is better for the task?\n{candidates}\n\nAnswer with the verdict alone, "
    "<{tag}>Action k</{tag}>, where k is the number of the better action: no reasoning before or after it."
)
_JUDGE_INSTRUCTIONS = {"free": JUDGE_INSTRUCTION, "none": JUDGE_INSTRUCTION_VERDICT_ONLY}


def safe_text(text: str) -> str:
    """OpenRLHF turns the literal ``<image>`` into an image slot; observations must never do that."""
    return text.replace("<image>", "[image]") if "<image>" in text else text


def env_title(env: str) -> str:
    return ENV_TITLES.get(env, env)


@lru_cache(maxsize=256)
def _agent_system(env: str) -> str:
    return AGENT_SYSTEM.format(env=env_title(env))


@lru_cache(maxsize=256)
def _judge_system(env: str, k: int) -> str:
    return JUDGE_SYSTEM.format(env=env_title(env), k=k)


@lru_cache(maxsize=64)
def _judge_instruction_parts(tag: str, reasoning: str = "free") -> tuple[str, str]:
    """The judgment instruction around its candidate block (formatted once per tag, not per prompt)."""
    if reasoning not in _JUDGE_INSTRUCTIONS:
        raise ValueError(f"unknown judgment reasoning {reasoning!r}; choose one of {', '.join(JUDGE_REASONING)}")
    head, tail = _JUDGE_INSTRUCTIONS[reasoning].split("{candidates}")
    return head, tail.format(tag=tag)


class Frame(NamedTuple):
    """What a prompt puts around a state: the system message and the text after the state.

    Every state prompt is ``[system, render_state(state) + "\n" + suffix]``. The suffix is kept in
    pieces so a token budget can count each distinct piece once (``openrlhf_act.prompt_budget``).
    """

    kind: str
    system: str
    suffix: tuple[str, ...]


def agent_frame(env: str) -> Frame:
    return Frame("agent", _agent_system(env), (AGENT_INSTRUCTION,))


def judgment_frame(
    env: str, candidates: tuple[str, ...] | list[str], *, tag: str = "answer", reasoning: str = "free"
) -> Frame:
    head, tail = _judge_instruction_parts(tag, reasoning)
    return Frame("contrast", _judge_system(env, len(candidates)), (head, *candidate_pieces(candidates), tail))


def state_pieces(state: State, *, max_admissible: int = DEFAULT_MAX_ADMISSIBLE_IN_PROMPT) -> list[str]:
    """The rendered state as pieces whose concatenation is :func:`render_state`'s text.

    Framing strings and each text of the state are separate pieces: a token counter then sees each
    observation, action and admissible action once however many prompts repeat it. Pieces are raw:
    ``safe_text`` applies where they are joined (and a token counter counts each piece's safe text;
    no framing piece can complete an ``<image>``).
    """
    parts = ["Task: ", state.task.strip(), "\n\n"]
    if state.history:
        header = "Recent history (oldest first"
        if state.omitted_turns:
            header += f"; {state.omitted_turns} earlier turns omitted"
        parts.append(header + "):\n")
        for observation, action in state.history:
            parts += ("Observation: ", observation.strip(), "\nAction: ", command_text(action), "\n")
        parts.append("\n")
    parts += ("Current observation:\n", state.observation.strip(), "\n")
    if state.admissible and len(state.admissible) <= max_admissible:
        listed = ["; "] * (2 * len(state.admissible) - 1)  # action, "; ", action, ...
        listed[::2] = state.admissible
        parts += ("\nAdmissible actions: ", *listed, "\n")
    return parts


def render_state(state: State, *, max_admissible: int = DEFAULT_MAX_ADMISSIBLE_IN_PROMPT) -> str:
    """Task, recent turns (oldest first), current observation, and admissible actions when short."""
    return safe_text("".join(state_pieces(state, max_admissible=max_admissible)))


def pieces_messages(frame: Frame, pieces: list[str]) -> list[dict[str, str]]:
    """The chat of a frame around an already rendered state (see :func:`state_pieces`)."""
    return [
        {"role": "system", "content": frame.system},
        {"role": "user", "content": safe_text("".join(pieces) + "\n" + "".join(frame.suffix))},
    ]


def framed_messages(
    state: State, frame: Frame, *, max_admissible: int = DEFAULT_MAX_ADMISSIBLE_IN_PROMPT
) -> list[dict[str, str]]:
    return pieces_messages(frame, state_pieces(state, max_admissible=max_admissible))


def agent_messages(state: State, *, max_admissible: int = DEFAULT_MAX_ADMISSIBLE_IN_PROMPT) -> list[dict[str, str]]:
    """The agent prompt (system + user) used for sampling, IL, RL, DPO and evaluation."""
    return framed_messages(state, agent_frame(state.env), max_admissible=max_admissible)


def candidate_pieces(candidates: tuple[str, ...] | list[str]) -> list[str]:
    """The numbered candidate block in pieces ("Action 1: ", text, "\nAction 2: ", text)."""
    labels = _candidate_labels(len(candidates))
    return [piece for label, text in zip(labels, candidates) for piece in (label, command_text(text))]


@lru_cache(maxsize=16)
def _candidate_labels(k: int) -> tuple[str, ...]:
    return ("Action 1: ", *(f"\nAction {i}: " for i in range(2, k + 1)))


def candidate_lines(candidates: tuple[str, ...] | list[str]) -> str:
    """The numbered candidate block of the judgment prompt ("Action 1: ...\nAction 2: ...")."""
    return safe_text("".join(candidate_pieces(candidates)))


def reverse_candidates(prompt: str, label: JudgmentLabel) -> tuple[str, JudgmentLabel] | None:
    """The same question with the candidates in reverse order (with two, swapped): the rendered
    ``prompt`` (the user message, or the whole chat-templated text) with its candidate block replaced,
    and the label whose answer follows the expert. Swap consistency is checked with this in training
    (the consistency executor) and in evaluation (``eval judgment``). ``None`` when the block is not
    found on its own lines exactly once, or reversing changes nothing.
    """
    swapped = replace(label, candidates=label.candidates[::-1], answer=len(label.candidates) + 1 - label.answer)
    block = "\n" + candidate_lines(label.candidates) + "\n"
    swapped_block = "\n" + candidate_lines(swapped.candidates) + "\n"
    if block == swapped_block or prompt.count(block) != 1:
        return None
    return prompt.replace(block, swapped_block), swapped


def with_judge_reasoning(prompt: str, reasoning: str, *, tag: str = "answer") -> str | None:
    """The rendered judgment ``prompt`` (a user message) asking for ``reasoning`` instead of what it
    asks now: its instruction's last part replaced. ``None`` when it ends with no known instruction
    (a prompt written by other code); ``eval judgment --rationale`` asks held-out rows this way."""
    wanted = _judge_instruction_parts(tag, reasoning)[1]
    for other in JUDGE_REASONING:
        tail = _judge_instruction_parts(tag, other)[1]
        if prompt.endswith(tail):
            return prompt[: len(prompt) - len(tail)] + wanted
    return None


def judgment_messages(
    state: State,
    candidates: tuple[str, ...] | list[str],
    *,
    tag: str = "answer",
    reasoning: str = "free",
    max_admissible: int = DEFAULT_MAX_ADMISSIBLE_IN_PROMPT,
) -> list[dict[str, str]]:
    """The ACT contrast prompt: the state, then "Action 1: ... / Action 2: ..." in the given order."""
    frame = judgment_frame(state.env, candidates, tag=tag, reasoning=reasoning)
    return framed_messages(state, frame, max_admissible=max_admissible)


def command_text(action: str) -> str:
    """A command as it follows "Action: ": one line as it is, a multi-line command (an SQL query, a
    shell script) as a fenced block on the next lines, which the action grammar reads back whole
    (``openrlhf_act.actions.read_action``) -- on one line only its first line would count."""
    action = action.strip()
    return f"\n```\n{action}\n```" if "\n" in action else action


def action_response(action: str, thought: str | None = None) -> str:
    """The assistant turn the agent prompt asks for: optional thought, then ``Action: ...``."""
    action_line = "Action: " + command_text(action)
    if thought and thought.strip():
        return f"Thought: {safe_text(thought.strip())}\n{action_line}"
    return action_line


def argued_rationale(candidates: tuple[str, ...] | list[str], index: int) -> str:
    """A closed reasoning block that argues for candidate ``index`` (1-based) over the others: what
    ``eval judgment --rationale injected-wrong`` pre-fills, naming a wrong action, so the verdict that
    follows shows whether the model checks a rationale or follows it."""
    others = " and ".join(f"Action {i} ({command_text(c)})" for i, c in enumerate(candidates, 1) if i != index)
    chosen = f"Action {index} ({command_text(candidates[index - 1])})"
    return safe_text(
        f"<think>\n{chosen} is the better choice: it is the step the task needs now and moves it forward. "
        f"{others} would not help at this point. So the better action is Action {index}.\n</think>\n\n"
    )


def verdict_response(index: int, *, tag: str = "answer") -> str:
    """The bare verdict (the SFT-on-choice control trains on this, with no reasoning)."""
    return f"<{tag}>Action {index}</{tag}>"


def episode_messages(env: str, task: str, turns: list[tuple[str, str, str | None]]) -> list[dict[str, str]]:
    """A whole expert episode as one chat for ``--data.multiturn`` SFT: each action is a target.

    ``turns`` holds (observation, action, thought) in order.
    """
    messages = [{"role": "system", "content": _agent_system(env)}]
    for i, (observation, action, thought) in enumerate(turns):
        content = safe_text(observation.strip())
        if i == 0:
            content = f"Task: {safe_text(task.strip())}\n\nCurrent observation:\n{content}\n\n{AGENT_INSTRUCTION}"
        messages.append({"role": "user", "content": content})
        messages.append({"role": "assistant", "content": action_response(action, thought)})
    return messages
