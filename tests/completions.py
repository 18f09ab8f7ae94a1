"""Sampled completions a policy really produces, and how the one action grammar reads each of them.

The scripted tiny model (``openrlhf_act.devtools.scripted_model``) answers with exactly these texts
through the real engines, so the samplers' finish reasons and the alternatives filter are tested on
what vLLM, transformers and an OpenAI-compatible server return.
"""

from __future__ import annotations

from openrlhf_act.schema import State

ADMISSIBLE = ("open door", "look around", "go to kitchen", "take key")
STATE = State(
    task_id="escape/v0",
    env="alfworld",
    task="leave the room through the door.",
    history=(),
    observation="You are in a small room. The door is closed.",
    expert_action="open door",
    step=0,
    admissible=ADMISSIBLE,
)
CUT_OFF = "Thought: The door is closed, so first I"
UNCLOSED_CUT_OFF = "<think>The door is locked, and the key"
OVER_LONG = "Action: " + "walk north, " * 200

# reply -> (reason, action) when the state above is sampled without --require-admissible
EXPECTED: dict[str, tuple[str, str | None]] = {
    "Thought: The kitchen may hold the key.\nAction: go to kitchen": ("ok", "go to kitchen"),
    "look around": ("ok", "look around"),  # a bare line that is an admissible command
    "Action: take key\nObservation: You take the key.\nAction: open door": ("ok", "take key"),
    "Action:\n```\nlook around\n```": ("ok", "look around"),
    "Action: open door.": ("equal_to_expert", None),
    "I'm not sure what to do here.": ("bare_not_admissible", None),  # prose
    "Maybe I should open the door,\nor look around first.": ("no_action", None),  # hedged prose
    "Action: look around\nAction: go to kitchen": ("several_actions", None),  # two commands, no commitment
    "Action: ": ("empty_action", None),
    "": ("no_action", None),
    OVER_LONG: ("over_long", None),
    "<think>The key must be near the door.</think>": ("no_action", None),  # reasoning only
    "<think>Perhaps the kitchen": ("unclosed_think", None),
    CUT_OFF: ("truncated", None),  # cut off by the length limit
    UNCLOSED_CUT_OFF: ("truncated", None),
}
REPLIES = tuple(EXPECTED)
CUT_OFF_REPLIES = (CUT_OFF, UNCLOSED_CUT_OFF)
