"""The ACT paper's reported numbers, as data, to compare our runs against.

Source: "Agentic Critical Training", arXiv 2603.08706, Qwen3-8B tables of v1 (March 2026) and v2
(October 2026; mean ± std over 3 runs), as transcribed in the project's PAPER_RESULTS.md. ALFWorld and
WebShop are success rates (%); ScienceWorld is next-action accuracy (%) in v1 and mean episode score
(0-100) in v2.
"""

from __future__ import annotations

SOURCE = "Agentic Critical Training (arXiv 2603.08706), Qwen3-8B"
BENCHMARKS = ("alfworld_seen", "alfworld_unseen", "webshop", "scienceworld")
BENCHMARK_TITLES = {
    "alfworld_seen": "ALFWorld seen (success %)",
    "alfworld_unseen": "ALFWorld unseen (success %)",
    "webshop": "WebShop (success %)",
    "scienceworld": "ScienceWorld",
}
SCIENCEWORLD_METRIC = {"v1": "next-action accuracy %", "v2": "episode score 0-100"}

# The evaluation protocol (``openrlhf_act.eval.protocols``: name, split) each column of the paper's episode
# tables is read as. The paper names no protocol; our reading: ALFWorld's figures are multiples of 1/140
# and 1/134 (35.71 = 50/140, 27.61 = 37/134), WebShop's of 0.2 = 1/500 (2.80, 7.40, 31.60), so they are
# the 140 / 134 games and 500 goals; the step limits are not stated. ScienceWorld's v2 episode score is
# read as ETO's test set, which the paper's Early Experience baseline uses (unverified: the paper gives
# no episode count). v1's ScienceWorld column is next-action accuracy on held-out expert states
# (``eval next-action``), not an episode protocol.
PROTOCOLS: dict[str, tuple[str, str]] = {
    "alfworld_seen": ("alfworld-seen", "valid_seen"),
    "alfworld_unseen": ("alfworld-unseen", "valid_unseen"),
    "webshop": ("webshop-500", "test"),
    "scienceworld": ("sciworld-eto", "test"),
}
NEXT_ACTION = "next-action"  # v1's ScienceWorld column: offline next-action accuracy


def protocol_of(benchmark: str, version: str) -> str:
    """The protocol name of a paper column in ``version`` (``next-action`` for v1's ScienceWorld)."""
    if version == "v1" and benchmark == "scienceworld":
        return NEXT_ACTION
    return PROTOCOLS[benchmark][0]


# method -> (ALFWorld seen, ALFWorld unseen, WebShop, ScienceWorld next-action accuracy)
V1: dict[str, tuple[float, float, float, float]] = {
    "Prompt, no thinking": (35.71, 27.61, 2.80, 28.01),
    "Prompt, thinking": (56.43, 50.00, 3.00, 25.21),
    "ACT stage only": (72.86, 72.39, 7.40, 26.71),
    "Imitation learning (IL)": (85.71, 82.84, 28.00, 42.80),
    "Early Experience (reflection SFT)": (87.86, 85.82, 31.00, 45.60),
    "ACT -> IL": (91.43, 87.31, 31.60, 48.69),
    "RL": (90.71, 84.33, 29.40, 43.04),
    "ACT -> RL": (92.86, 88.06, 33.80, 50.34),
}

# method -> ((mean, std) for ALFWorld seen, ALFWorld unseen, WebShop, ScienceWorld episode score)
V2: dict[str, tuple[tuple[float, float], ...]] = {
    "IL": ((85.71, 0.58), (79.85, 2.79), (28.00, 1.31), (21.94, 2.65)),
    "ACT -> IL": ((89.76, 1.88), (83.58, 3.80), (32.00, 1.18), (32.85, 0.15)),
    "IL -> RL, no ACT": ((94.28, 1.54), (90.80, 0.70), (39.53, 1.06), (30.52, 0.46)),
    "ACT -> IL -> RL": ((96.19, 0.67), (91.54, 0.35), (42.80, 0.59), (34.63, 0.33)),
    "same, DPO instead of ACT": ((93.57, 0.58), (90.05, 1.53), (41.40, 0.99), (33.56, 0.27)),
    "same, SFT-on-choice instead of ACT": ((94.76, 1.34), (92.78, 1.41), (37.73, 1.48), (30.10, 0.19)),
}

# v2: judgment accuracy (%) on 400 held-out ALFWorld pairs, Qwen3-8B after ACT.
JUDGMENT_V2: dict[str, float] = {
    "free reasoning": 86.50,
    "rationale removed": 80.75,
    "injected wrong rationale": 50.75,
    "untrained model": 2.25,
}
# The ``eval judgment --rationale`` setting each of those figures was measured under.
JUDGMENT_V2_RATIONALE: dict[str, str] = {
    "free reasoning": "free",
    "rationale removed": "none",
    "injected wrong rationale": "injected-wrong",
    "untrained model": "free",
}

# v1: general reasoning after training on ALFWorld data only, (mean, std) over 3 runs, accuracy %.
REASONING_BENCHMARKS = ("MATH-500", "GPQA-Diamond")
REASONING_V1: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "Prompt, thinking": ((86.93, 0.74), (51.52, 1.89)),
    "IL": ((87.00, 0.33), (44.61, 0.95)),
    "Early Experience": ((86.86, 0.25), (51.85, 0.63)),
    "RL": ((87.07, 0.77), (52.36, 1.32)),
    "ACT": ((87.73, 0.19), (53.37, 0.63)),
}
# The lm-evaluation-harness task (``eval reasoning --tasks``) read as each benchmark, and its document
# count: the paper names neither prompt nor answer extraction, so only the question set is known to match;
# its figures stand only next to runs of the whole set.
REASONING_TASKS: dict[str, tuple[str, int]] = {
    "minerva_math500": ("MATH-500", 500),
    "gpqa_diamond_cot_zeroshot": ("GPQA-Diamond", 198),
}


def paper_rows(version: str) -> dict[str, tuple[str, ...]]:
    """Method -> formatted cells in :data:`BENCHMARKS` order (each in its column's :func:`protocol_of`)."""
    if version == "v1":
        return {m: tuple(f"{v:.2f}" for v in values) for m, values in V1.items()}
    if version == "v2":
        return {m: tuple(f"{mean:.2f} ± {std:.2f}" for mean, std in values) for m, values in V2.items()}
    raise ValueError(f"unknown paper version {version!r}; choose v1 or v2")
