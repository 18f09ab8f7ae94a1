"""An episode's transcript is a function of the environment's version, the episode and the policy's outputs only:
not of what its worker played before, the order of a run's episodes, or the number of workers
(docs/evaluation.md, "Reproducible episodes"). And every record of a run or a data set names the environment's
versions."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest

from openrlhf_act.envs.registry import env_versions, expert_options, resolve_episodes
from openrlhf_act.eval.episodes import EpisodeRunner
from openrlhf_act.eval.policies import ExpertPolicy
from openrlhf_act.files import read_jsonl
from tests.conftest import requires_scienceworld
from tests.test_build import write_trajectories

# Episodes whose worlds listed their objects in another order, and whose gold paths picked other objects, after
# other episodes in the same JVM (before the JVM's identity hashes were made constant).
EPISODES = [("find-non-living-thing", v) for v in (0, 1, 2)] + [("find-plant", v) for v in (0, 1, 2)]


def _played(out: Path) -> dict[str, list[tuple[str, str]]]:
    """Per episode: the task description, then every step's prompt and observation."""
    played = {}
    for record in read_jsonl(out / "episodes.jsonl", log=True):
        assert record["status"] == "ok" and record["won"], record["episode"]
        steps = [(step["prompt"], step["observation"]) for step in record["transcript"]]
        played[record["episode"]] = [(record["task_description"], ""), *steps]
    return played


def _run(tasks, out: Path, **kwargs) -> dict[str, list[tuple[str, str]]]:
    EpisodeRunner("scienceworld", tasks, ExpertPolicy(), out, progress=False, **kwargs).run()
    return _played(out)


@pytest.mark.slow
@requires_scienceworld
def test_the_same_episodes_play_the_same_in_any_order_worker_count_and_history(tmp_path):
    from openrlhf_act.envs.pool import WorkerPool

    options = expert_options("scienceworld")
    tasks = [
        t for name, v in EPISODES for t in resolve_episodes("scienceworld", split="train", tasks=[name], variations=[v])
    ]
    with WorkerPool("scienceworld", options, 1) as pool:  # one worker: every episode after the others
        forward = _run(tasks, tmp_path / "forward", pool=pool)
        again = _run(tasks[-1:], tmp_path / "again", pool=pool)  # the last one, twice in a row on one worker
    reverse = _run(tasks[::-1], tmp_path / "reverse", workers=2, env_options=options)
    assert len(forward) == len(EPISODES) and all(len(steps) > 2 for steps in forward.values())
    assert reverse == forward
    ((key, steps),) = again.items()
    assert steps == forward[key]
    recorded = json.loads((tmp_path / "forward" / "run.json").read_text())["env_versions"]
    assert recorded["scienceworld"] == metadata.version("scienceworld") and recorded["java"].startswith("17")


def test_data_manifests_name_the_environments_versions(tmp_path):
    from data_tools.build import BuildConfig, build

    manifest = build(BuildConfig(inputs=(str(write_trajectories(tmp_path / "t.jsonl", tasks=4)),)), tmp_path / "act")
    assert manifest.manifest["env_versions"] == {"scienceworld": env_versions("scienceworld")}
    assert set(env_versions("alfworld")) == {"alfworld", "textworld"}
    assert env_versions("webshop") == {}  # a remote service: nothing installed here decides its pages
