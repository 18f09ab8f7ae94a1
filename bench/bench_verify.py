"""What verifying pairs costs (``data build --verify-alternatives``): environment steps and seconds per pair.

* ScienceWorld (prefix replay: the simulator cannot save its state, so a pair at step i costs a reset
  and i + 1 steps): gold trajectories of fast tasks, one alternative per state from the ``admissible``
  sampler, a whole ``build()`` with verification, 2 workers; the build's own manifest figures.
* ALFWorld (the fixture game, skipped where it is absent): the same pairs verified walking forward with
  snapshots and by prefix replay, one worker; the ratio of the two modes' seconds per pair.

Needs scienceworld, Java 17 and alfworld.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from bench.bench_replay import _gold_file
from bench.common import BenchResult

ALFWORLD_GAME = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "alfworld" / "game.tw-pddl"


def _sciworld(tmp: Path, quick: bool) -> dict:
    from data_tools.build import BuildConfig, build
    from openrlhf_act.envs.scienceworld import FAST_TASKS

    source = tmp / "gold.jsonl"
    _gold_file(source, list(FAST_TASKS[:2] if quick else FAST_TASKS[:4]), 1 if quick else 2, admissible=True)
    config = BuildConfig(inputs=(str(source),), sampler="admissible", verify_alternatives=True, verify_workers=2)
    build(config, tmp / "build", progress=False)
    return json.loads((tmp / "build" / "manifest.json").read_text())["verification"]


def _alfworld_planner_episode():
    from openrlhf_act.envs.alfworld import ALFWorld
    from openrlhf_act.envs.base import EnvTask
    from openrlhf_act.schema import Step, Trajectory

    with ALFWorld(expert="planner") as env:
        env.load(EnvTask("alfworld", "pick_heat_then_place_in_recep", game_file=str(ALFWORLD_GAME)))
        current, steps = env.reset(), []
        while not current.done:
            after = env.step(current.expert)
            steps.append(Step(current.observation, current.expert, admissible=current.admissible, score=after.score))
            current = after
        meta = {"task_name": "pick_heat_then_place_in_recep", "game_file": str(ALFWORLD_GAME)}
        return Trajectory(
            "pick_heat_then_place_in_recep/fixture", "alfworld", env.task_description, tuple(steps), meta=meta
        )


def _alfworld_modes() -> tuple[dict, dict]:
    import random

    from data_tools.verify import episode_of, verify_pairs
    from openrlhf_act.schema import ContrastPair
    from openrlhf_act.states import states_from_trajectory

    trajectory = _alfworld_planner_episode()
    rng = random.Random(0)
    pairs = []
    for state in states_from_trajectory(trajectory):
        others = [a for a in state.admissible or () if a != state.expert_action]
        pairs.append(ContrastPair(state=state, alternatives=(rng.choice(others),)))
    episodes = {trajectory.task_id: episode_of(trajectory)}
    walk = verify_pairs(episodes, pairs, workers=1, snapshots=True, progress=False)[1].to_json()
    replay = verify_pairs(episodes, pairs, workers=1, snapshots=False, progress=False)[1].to_json()
    return walk, replay


def run(quick: bool) -> list[BenchResult]:
    with tempfile.TemporaryDirectory() as tmp:
        sci = _sciworld(Path(tmp), quick)
    note = f"{sci['pairs']} pairs, {sci['env_starts']} resets"
    results = [
        BenchResult(
            "verify, ScienceWorld prefix replay: env steps/pair", sci["steps_per_pair"], "steps", "-", True, note
        ),
        BenchResult(
            "verify, ScienceWorld prefix replay: s/pair",
            sci["seconds_per_pair"],
            "s",
            "-",
            True,
            f"wall, 2 workers, simulators' start included; {sci['play_seconds_per_pair']} s/pair inside the jobs",
        ),
    ]
    if ALFWORLD_GAME.is_file():
        walk, replay = _alfworld_modes()
        results += [
            BenchResult(
                "verify, ALFWorld walk forward: env steps/pair",
                walk["steps_per_pair"],
                "steps",
                "-",
                True,
                f"{walk['pairs']} pairs, {walk['restores']} restores, {walk['env_starts']} start",
            ),
            BenchResult(
                "verify, ALFWorld walk forward: s/pair", walk["play_seconds_per_pair"], "s", "-", True, "1 worker"
            ),
            BenchResult(
                "verify, ALFWorld prefix replay / walk forward",
                replay["play_seconds_per_pair"] / walk["play_seconds_per_pair"],
                "x",
                "-",
                True,
                f"prefix replay {replay['play_seconds_per_pair']} s/pair, {replay['steps_per_pair']} steps/pair",
            ),
        ]
    return results
