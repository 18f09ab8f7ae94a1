"""A toy judgment task a tiny model can learn, whose right answer depends on the state, not the candidates.

The learning check (bench/bench_learning.py) and its CI twin (tests/test_learning.py) need a task that
plain supervision learns in seconds, so that a run that does not learn points at the RL wiring. As in ACT,
the same two candidates are right in one state and wrong in another: a door, gate or hatch that is locked
must be unlocked, an open one gone through; the alternative is the other action.
This module makes the contrast pairs (states with the expert action and one alternative); the rows are
made from them by ``data build``'s own functions. Plain supervision on the verdicts alone stays at chance
for 300 steps (the answer is an XOR of state and candidate order: no first-order signal); mixed with
imitation of the expert on the agent prompt (state -> action) it reaches 1.0 in about 200 steps.
:func:`task_vocabulary` gives the tokenizer corpus and the framing texts that ``build_tiny_model`` turns
into single tokens, which keeps a prompt near 40 tokens.
"""

from __future__ import annotations

import itertools
import random

from openrlhf_act.devtools.tiny_model import Vocabulary
from openrlhf_act.prompts import action_response, agent_frame, judgment_frame, state_pieces, verdict_response
from openrlhf_act.schema import ContrastPair, State

ENV = "doors"
COLORS = ("red", "blue", "green", "white", "black", "brown", "grey", "pink")
THINGS = ("door", "gate", "hatch")
# state of the passage -> the expert's verb; the alternative is the other one
EXPERT_VERB = {"locked": "unlock", "open": "go through"}


def _pair(color: str, thing: str, status: str, alternative_verb: str, index: int, split: str) -> ContrastPair:
    name = f"{color} {thing}"
    state = State(
        task_id=f"{ENV}-{split}/{index}",
        env=ENV,
        task=f"Go through the {name}.",
        history=(),
        observation=f"The {name} is {status}.",
        expert_action=f"{EXPERT_VERB[status]} {name}",
        step=0,
    )
    return ContrastPair(state, (f"{alternative_verb} {name}",))


def task_pairs(seed: int, held_out: float = 0.25) -> dict[str, list[ContrastPair]]:
    """Every (passage, status, alternative) once, split at random into ``train`` and ``eval``."""
    cases = [
        (color, thing, status, verb)
        for color, thing, status in itertools.product(COLORS, THINGS, EXPERT_VERB)
        for verb in EXPERT_VERB.values()
        if verb != EXPERT_VERB[status]
    ]
    random.Random(f"learning-task:{seed}").shuffle(cases)
    cut = round(len(cases) * held_out)
    splits = {"eval": cases[:cut], "train": cases[cut:]}
    return {split: [_pair(*case, i, split) for i, case in enumerate(chosen)] for split, chosen in splits.items()}


def task_vocabulary() -> Vocabulary:
    """The task's texts (tokenizer corpus) and the pieces every prompt shares (single tokens), for both the
    judgment prompt and the agent prompt (the warm-up imitates the expert on it)."""
    pairs = task_pairs(0)["train"] + task_pairs(0)["eval"]
    corpus, shared = ["system", "user", "assistant", verdict_response(1), verdict_response(2)], None
    agent = agent_frame(ENV)
    for pair in pairs:
        judgment = judgment_frame(ENV, (pair.state.expert_action, *pair.alternatives))
        pieces = [*state_pieces(pair.state), judgment.system, *judgment.suffix, agent.system, *agent.suffix]
        corpus.extend([*pieces, action_response(pair.state.expert_action)])
        shared = set(pieces) if shared is None else shared & set(pieces)
    framing = sorted(piece for piece in shared or () if piece.strip())
    return Vocabulary(tuple(corpus), tuple(framing))
