"""The model's chat template cut into the pieces a running episode appends, turn by turn.

OpenRLHF's multi-turn executor extends the token sequence with text, so the opening, each closing of an
assistant turn and each user turn must render exactly what the template renders over the whole chat
(the shape of the ``sft_multiturn`` IL data): the policy is trained on the tokens an SFT model saw.
"""

from __future__ import annotations

from typing import Any

from openrlhf_act.prompts import episode_messages, safe_text


class ChatTurns:
    """The model's chat template cut into the pieces a running conversation needs."""

    def __init__(self, tokenizer: Any, template_kwargs: dict[str, Any]):
        self.tokenizer = tokenizer
        self.kwargs = template_kwargs
        probe = [
            {"role": "system", "content": "S"},
            {"role": "user", "content": "U1"},
            {"role": "assistant", "content": "A1"},
        ]
        closed = self._render(probe, generation=False)
        extended = self._render([*probe, {"role": "user", "content": "U2"}], generation=True)
        if not extended.startswith(closed) or "U2" not in extended[len(closed) :]:
            raise ValueError("the chat template does not extend a conversation by appending; it cannot run episodes")
        self.assistant_close = closed[closed.rindex("A1") + 2 :]
        self.user_prefix, self.user_suffix = extended[len(closed) :].split("U2", 1)
        eos = getattr(tokenizer, "eos_token", None) or ""
        self.after_eos = self.assistant_close.split(eos, 1)[1] if eos and eos in self.assistant_close else None

    def _render(self, messages: list[dict[str, str]], *, generation: bool) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation, **self.kwargs
        )

    def opening(self, env: str, task: str, observation: str) -> str:
        """System prompt and first user turn (task + first observation), as in ``sft_multiturn`` data."""
        messages = episode_messages(env, task, [(observation, "", None)])[:2]
        return self._render(messages, generation=True)

    def next_turn(self, observation: str, *, ended_by_eos: bool) -> str:
        """Close the assistant turn (unless its end-of-turn token is already there), then the user turn."""
        close = self.after_eos if ended_by_eos and self.after_eos is not None else self.assistant_close
        return close + self.user_prefix + safe_text(observation.strip()) + self.user_suffix
