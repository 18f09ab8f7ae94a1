"""Prompt rendering: pure functions of a state (and candidates).

One agent prompt serves sampling alternatives, the IL/RL/DPO data and evaluation, so a model is
trained and tested on exactly the prompt it was sampled with. The judgment prompt shows the same
state followed by the numbered candidates.
"""

from __future__ import annotations

from functools import lru_cache

from openrlhf_act.schema import State

DEFAULT_MAX_ADMISSIBLE_IN_PROMPT = 50
ENV_TITLES = {"scienceworld": "ScienceWorld", "alfworld": "ALFWorld", "webshop": "WebShop", "textworld": "TextWorld"}

AGENT_SYSTEM = (
    "You are an agent acting in the text environment {env}. At every turn you see the task, the "
    "recent history and the current observation. You may reason first; then end your reply with "
    "exactly one line of the form\nAction: <command>"
)
AGENT_INSTRUCTION = 'What is your next action? End your reply with one line "Action: <command>".'

JUDGE_SYSTEM = (
    "You are an expert agent in the text environment {env}. You are shown the task, the recent "
    "history, the current observation and {k} candidate next actions. Decide which candidate is "
    "better for accomplishing the task."
)
JUDGE_INSTRUCTION = (
    "Which action is better for the task?\n{candidates}\n\nThink about what each action leads to, "
    "then give your final verdict as <{tag}>Action k</{tag}>, where k is the number of the better action."
)


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
def _judge_instruction_parts(tag: str) -> tuple[str, str]:
    """The judgment instruction around its candidate block (formatted once per tag, not per prompt)."""
    head, tail = JUDGE_INSTRUCTION.split("{candidates}")
    return head, tail.format(tag=tag)


def render_state(state: State, *, max_admissible: int = DEFAULT_MAX_ADMISSIBLE_IN_PROMPT) -> str:
    """Task, recent turns (oldest first), current observation, and admissible actions when short."""
    parts = ["Task: ", state.task.strip(), "\n\n"]
    if state.history:
        parts.append("Recent history (oldest first")
        if state.omitted_turns:
            parts.append(f"; {state.omitted_turns} earlier turns omitted")
        parts.append("):\n")
        for observation, action in state.history:
            parts += ["Observation: ", observation.strip(), "\nAction: ", action.strip(), "\n"]
        parts.append("\n")
    parts += ["Current observation:\n", state.observation.strip(), "\n"]
    if state.admissible and len(state.admissible) <= max_admissible:
        parts += ["\nAdmissible actions: ", "; ".join(state.admissible), "\n"]
    return safe_text("".join(parts))


def agent_messages(state: State, *, max_admissible: int = DEFAULT_MAX_ADMISSIBLE_IN_PROMPT) -> list[dict[str, str]]:
    """The agent prompt (system + user) used for sampling, IL, RL, DPO and evaluation."""
    return [
        {"role": "system", "content": _agent_system(state.env)},
        {"role": "user", "content": render_state(state, max_admissible=max_admissible) + "\n" + AGENT_INSTRUCTION},
    ]


def candidate_lines(candidates: tuple[str, ...] | list[str]) -> str:
    """The numbered candidate block of the judgment prompt ("Action 1: ...\nAction 2: ...")."""
    return safe_text("\n".join([f"Action {i}: {c.strip()}" for i, c in enumerate(candidates, 1)]))


def judgment_messages(
    state: State,
    candidates: tuple[str, ...] | list[str],
    *,
    tag: str = "answer",
    max_admissible: int = DEFAULT_MAX_ADMISSIBLE_IN_PROMPT,
) -> list[dict[str, str]]:
    """The ACT contrast prompt: the state, then "Action 1: ... / Action 2: ..." in the given order."""
    head, tail = _judge_instruction_parts(tag)
    listed = candidate_lines(candidates)
    return [
        {"role": "system", "content": _judge_system(state.env, len(candidates))},
        {"role": "user", "content": render_state(state, max_admissible=max_admissible) + "\n" + head + listed + tail},
    ]


def action_response(action: str, thought: str | None = None) -> str:
    """The assistant turn the agent prompt asks for: optional thought, then ``Action: ...``."""
    action_line = "Action: " + action.strip()
    if thought and thought.strip():
        return f"Thought: {safe_text(thought.strip())}\n{action_line}"
    return action_line


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
