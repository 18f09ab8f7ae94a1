"""Evaluation protocols: named presets of ``eval episodes`` (which episodes, step limits, options, metric).

Published numbers on the same benchmark differ in their episode set, step limit and score, so a figure
means something only together with its protocol. A :class:`Protocol` fixes all of them; the run records
its name, and ``eval report`` never puts figures of two protocols in one column.

Sources (facts, written here as our own tables):

* ScienceWorld's own variation splits (``scienceworld`` 1.2.3: ``get_variations_dev`` / ``_test``):
  30 tasks, 1,796 dev and 1,819 test variations. ``ScienceWorldEnv``'s default step limit is 100.
* ETO (Song et al. 2024, repository ``Yifan-Song793/ETO``, ``eval_agent/data/sciworld/``): 24 of the 30
  tasks; test = the first 10 variations of each task in ScienceWorld's test split (211 episodes; ETO's
  ``test_indices.json`` lists exactly these); dev = a sample of at most 10 variations per task of
  ScienceWorld's dev split (194 episodes, ``dev_indices.json``; not derivable, so listed below);
  per-task step limits from ``max_steps.json``; loaded with ``simplificationStr="easy"``; an episode
  scores the highest raw score it reached (0-100).
* ALFWorld: the 140 ``valid_seen`` / 134 ``valid_unseen`` games that ALFWorld's own
  ``collect_game_files`` keeps; step limit 50 (ALFWorld's ``base_config.yaml``, ReAct, verl-agent;
  ETO uses 40). The games exist only on the user's ``$ALFWORLD_DATA``.
* WebShop: goals 0-499, the test split of WebShop's own baselines (``baseline_models/env.py``), with
  the adapter's 15-step limit (verl-agent); ETO's 200 test goals (``eval_agent/data/webshop/
  test_indices.json``, a sample of goal ids across WebShop's whole shuffled goal list) with ETO's
  10-step limit (``eval_agent/configs/task/webshop.json``). ETO's ids index the full catalogue's goal
  list: the server must load the full catalogue, not the 1,000-product one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from openrlhf_act.envs.alfworld import DEFAULT_MAX_STEPS as ALFWORLD_STEPS
from openrlhf_act.envs.base import EnvTask, TextEnv
from openrlhf_act.envs.registry import make_env, resolve_episodes
from openrlhf_act.errors import UsageError
from openrlhf_act.eval import paper_results

SCORE_METRICS = ("final", "max")  # an episode's score: where it ended, or the highest it reached

# ETO's per-task ScienceWorld step limits (eval_agent/data/sciworld/max_steps.json), in ScienceWorld's task
# names; its keys are ETO's 24 tasks.
ETO_SCIENCEWORLD_STEPS: Mapping[str, int] = MappingProxyType(
    {
        "boil": 100,
        "change-the-state-of-matter-of": 80,
        "chemistry-mix": 60,
        "chemistry-mix-paint-secondary-color": 15,
        "chemistry-mix-paint-tertiary-color": 30,
        "find-animal": 15,
        "find-living-thing": 15,
        "find-non-living-thing": 15,
        "find-plant": 15,
        "freeze": 80,
        "grow-fruit": 60,
        "grow-plant": 30,
        "identify-life-stages-1": 30,
        "identify-life-stages-2": 30,
        "lifespan-longest-lived": 10,
        "lifespan-longest-lived-then-shortest-lived": 12,
        "lifespan-shortest-lived": 10,
        "measure-melting-point-known-substance": 120,
        "melt": 80,
        "power-component": 20,
        "power-component-renewable-vs-nonrenewable-energy": 30,
        "test-conductivity": 30,
        "test-conductivity-of-unknown-substances": 30,
        "use-thermometer": 30,
    }
)

# ETO's ScienceWorld dev variations (eval_agent/data/sciworld/dev_indices.json, 194 episodes), sorted per
# task; all lie in ScienceWorld's dev split.
ETO_SCIENCEWORLD_DEV: Mapping[str, tuple[int, ...]] = MappingProxyType(
    {
        "boil": (14, 15, 16, 17, 19, 20),
        "change-the-state-of-matter-of": (14, 15, 16, 17, 18, 19, 20),
        "chemistry-mix": (16, 17, 18, 19, 20, 21, 22, 23),
        "chemistry-mix-paint-secondary-color": (18, 19, 20, 21, 22, 23, 24, 25, 26),
        "chemistry-mix-paint-tertiary-color": (18, 19, 20, 21, 22, 23, 24, 25, 26),
        "find-animal": (159, 173, 176, 188, 193, 211, 213, 216, 218, 221),
        "find-living-thing": (161, 180, 186, 202, 206, 209, 214, 216, 218, 221),
        "find-non-living-thing": (150, 158, 179, 184, 185, 187, 192, 198, 209, 214),
        "find-plant": (154, 164, 165, 175, 177, 179, 181, 203, 206, 209),
        "freeze": (14, 15, 16, 17, 18, 19, 20),
        "grow-fruit": (62, 65, 68, 71, 72, 80, 84, 85, 88, 90),
        "grow-plant": (64, 65, 68, 77, 78, 84, 85, 86, 87, 88),
        "identify-life-stages-1": (6, 7, 8),
        "identify-life-stages-2": (4, 5),
        "lifespan-longest-lived": (66, 68, 72, 73, 78, 80, 83, 84, 88, 92),
        "lifespan-longest-lived-then-shortest-lived": (64, 66, 67, 68, 69, 72, 78, 80, 85, 87),
        "lifespan-shortest-lived": (69, 70, 71, 76, 80, 82, 84, 85, 87, 91),
        "measure-melting-point-known-substance": (253, 280, 281, 286, 287, 292, 299, 300, 325, 326),
        "melt": (14, 15, 16, 17, 18, 19, 20),
        "power-component": (11, 12, 13),
        "power-component-renewable-vs-nonrenewable-energy": (10, 13, 14),
        "test-conductivity": (474, 479, 485, 523, 528, 579, 587, 640, 655, 662),
        "test-conductivity-of-unknown-substances": (313, 352, 376, 386, 389, 394, 409, 413, 418, 448),
        "use-thermometer": (284, 285, 291, 314, 358, 360, 364, 378, 384, 385),
    }
)

# ETO's 200 WebShop test goals (eval_agent/data/webshop/test_indices.json), sorted.
ETO_WEBSHOP_TEST: tuple[int, ...] = (
    314, 485, 580, 604, 818, 846, 861, 900, 950, 978, 988, 1035, 1143, 1145, 1190, 1211, 1254, 1301, 1346, 1410,
    1414, 1427, 1451, 1642, 1689, 1735, 1857, 2159, 2367, 2583, 2640, 2731, 2751, 2828, 2853, 2933, 2980, 3012,
    3134, 3137, 3141, 3229, 3230, 3354, 3403, 3466, 3503, 3569, 3584, 3642, 3742, 3838, 3841, 3847, 3854, 3917,
    3936, 3944, 4078, 4117, 4161, 4196, 4249, 4288, 4317, 4415, 4417, 4465, 4530, 4656, 4705, 4773, 4805, 4886,
    4914, 4944, 4962, 4999, 5009, 5023, 5030, 5068, 5144, 5375, 5413, 5433, 5455, 5457, 5492, 5563, 5613, 5720,
    5757, 5825, 5900, 5934, 5948, 6074, 6115, 6133, 6206, 6275, 6351, 6446, 6453, 6596, 6604, 6686, 6719, 6766,
    6770, 6925, 6943, 6990, 7057, 7097, 7209, 7232, 7235, 7265, 7331, 7368, 7375, 7378, 7475, 7572, 7603, 7607,
    7624, 7662, 7802, 7828, 7922, 7953, 7999, 8089, 8120, 8208, 8231, 8255, 8330, 8359, 8387, 8434, 8459, 8573,
    8693, 8695, 8725, 8891, 8897, 9021, 9102, 9169, 9188, 9346, 9439, 9518, 9639, 9645, 9666, 9680, 9744, 9794,
    9911, 9963, 10031, 10072, 10126, 10151, 10183, 10188, 10364, 10438, 10558, 10584, 10660, 10789, 10886,
    10887, 10939, 10959, 10965, 10982, 11020, 11151, 11155, 11322, 11358, 11390, 11543, 11572, 11580, 11755,
    11809, 11831, 11861, 11870, 11882, 11896,
)  # fmt: skip


@dataclass(frozen=True)
class Selection:
    """The episodes of one protocol split. ``split``: the environment split they come from (None: ids
    that lie in no split of ours, such as ETO's WebShop goals); per task (all when ``tasks`` is empty)
    the given ``variations`` or the split's ``first`` N (all when None). ``count`` is the documented
    number of episodes, which the tests hold the selection to."""

    split: str | None
    count: int
    tasks: tuple[str, ...] = ()
    first: int | None = None
    variations: Mapping[str, tuple[int, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Protocol:
    """One published way to evaluate on a benchmark; see the module docstring."""

    name: str
    env: str
    description: str
    source: str
    splits: Mapping[str, Selection]  # protocol split -> its episodes; the first is the default
    max_steps: int | Mapping[str, int]  # one limit, or one per task
    figure: str  # the summary figure the benchmark reports: "success_rate" or "mean_score"
    env_options: Mapping[str, Any] = field(default_factory=dict)
    score_metric: str = "final"

    @property
    def default_split(self) -> str:
        return next(iter(self.splits))

    @property
    def paper_column(self) -> str | None:
        """The column of the paper's table this protocol's test figures stand next to (our reading)."""
        return next((b for b, (name, _) in paper_results.PROTOCOLS.items() if name == self.name), None)

    def selection(self, split: str | None = None) -> Selection:
        split = split or self.default_split
        if split not in self.splits:
            raise UsageError(f"protocol {self.name} has no split {split!r}; choose {', '.join(self.splits)}")
        return self.splits[split]

    def step_limits(self) -> int | dict[str, int]:
        """The step limit for ``eval episodes``: one number, or one per task."""
        return self.max_steps if isinstance(self.max_steps, int) else dict(self.max_steps)

    def episodes(
        self, split: str | None = None, options: dict[str, Any] | None = None, env: TextEnv | None = None
    ) -> list[EnvTask]:
        """The split's episodes, checked by the environment's episode lists. ScienceWorld asks a simulator:
        ``env`` (a running adapter of this environment) or one started for the call."""
        selection = self.selection(split)
        options = {**self.env_options, **(options or {})}
        if selection.split is None:
            return [EnvTask(self.env, t, variation=v) for t, ids in selection.variations.items() for v in ids]
        if env is None and selection.variations:
            with make_env(self.env, **options) as own:  # one simulator checks every task's variations
                return self.episodes(split, options, own)
        if not selection.variations:
            tasks = list(selection.tasks) or None
            return resolve_episodes(
                self.env, split=selection.split, tasks=tasks, episodes=selection.first, env=env, options=options
            )
        return [
            episode
            for task, ids in selection.variations.items()
            for episode in resolve_episodes(
                self.env, split=selection.split, tasks=[task], variations=ids, env=env, options=options
            )
        ]

    def record(self, split: str | None = None) -> dict[str, Any]:
        """What a run records of its protocol (``run.json`` and ``summary.json``)."""
        split = split or self.default_split
        return {
            "name": self.name,
            "split": split,
            "episodes": self.selection(split).count,
            "score_metric": self.score_metric,
        }


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            name="sciworld-official",
            env="scienceworld",
            description="ScienceWorld's own splits: every variation of all 30 tasks, no simplification, "
            "100 steps, final score",
            source="scienceworld 1.2.3 variation splits; ScienceWorldEnv's default step limit",
            splits={"test": Selection("test", 1819), "dev": Selection("dev", 1796)},
            max_steps=100,  # ScienceWorldEnv's default envStepLimit
            figure="mean_score",
        ),
        Protocol(
            name="sciworld-eto",
            env="scienceworld",
            description="ETO / Early Experience: 24 tasks, at most 10 variations each, per-task step limits "
            "(10-120), simplification easy, highest score reached",
            source="Yifan-Song793/ETO eval_agent/data/sciworld/ (test: first 10 of ScienceWorld's test split)",
            splits={
                "test": Selection("test", 211, tasks=tuple(ETO_SCIENCEWORLD_STEPS), first=10),
                "dev": Selection("dev", 194, variations=ETO_SCIENCEWORLD_DEV),
            },
            max_steps=ETO_SCIENCEWORLD_STEPS,
            figure="mean_score",
            env_options={"simplification": "easy"},
            score_metric="max",
        ),
        Protocol(
            name="alfworld-seen",
            env="alfworld",
            description="ALFWorld valid_seen: 140 games, 50 steps, success rate",
            source="ALFWorld's collect_game_files filter; max_nb_steps_per_episode 50 (base_config.yaml)",
            splits={"valid_seen": Selection("valid_seen", 140)},
            max_steps=ALFWORLD_STEPS,
            figure="success_rate",
        ),
        Protocol(
            name="alfworld-unseen",
            env="alfworld",
            description="ALFWorld valid_unseen: 134 games, 50 steps, success rate",
            source="ALFWorld's collect_game_files filter; max_nb_steps_per_episode 50 (base_config.yaml)",
            splits={"valid_unseen": Selection("valid_unseen", 134)},
            max_steps=ALFWORLD_STEPS,
            figure="success_rate",
        ),
        Protocol(
            name="webshop-500",
            env="webshop",
            description="WebShop test goals 0-499, 15 steps, success rate (reward 1.0)",
            source="WebShop baseline_models/env.py test split; verl-agent's 15-step limit",
            splits={"test": Selection("test", 500)},
            max_steps=15,
            figure="success_rate",
        ),
        Protocol(
            name="webshop-eto200",
            env="webshop",
            description="ETO's 200 WebShop test goals (full catalogue), 10 steps, success rate",
            source="Yifan-Song793/ETO eval_agent/data/webshop/test_indices.json, configs/task/webshop.json",
            splits={"test": Selection(None, 200, variations={"webshop": ETO_WEBSHOP_TEST})},
            max_steps=10,
            figure="success_rate",
        ),
    )
}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise UsageError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)} (see `eval protocols`)")
    return PROTOCOLS[name]
