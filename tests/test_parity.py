"""Train/eval parity: the prompt ``eval episodes`` shows the policy at step i is, byte for byte, the
prompt of the exported row at step i of the same episode, with and without a prompt budget
(``--max-prompt-tokens``); a step whose prompt cannot fit ends its episode with a clear status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openrlhf_act.cli import main
from openrlhf_act.envs.base import EnvTask
from openrlhf_act.envs.registry import expert_options, resolve_episodes
from openrlhf_act.errors import UsageError
from openrlhf_act.eval.episodes import EpisodeRunner
from openrlhf_act.eval.policies import ExpertPolicy
from openrlhf_act.eval.summary import OVER_BUDGET
from openrlhf_act.files import read_jsonl
from openrlhf_act.prompts import agent_frame
from tests.conftest import requires_scienceworld
from tests.test_envs import StandInWebShop

TASK = "find-non-living-thing"  # five gold steps; the fourth observation is long
# estimated tokens: steps 0-2 fit whole (300-350); step 3 loses its history and has its observation
# clipped, step 4 loses its history
BUDGET = 400


def exported(trajectories: Path, out: Path, *budget: str) -> tuple[list[dict], dict]:
    """The ``next_action`` rows of the trajectories (train and eval) in step order, and the manifest."""
    argv = ["data", "export", "--kind", "next_action", "--input", str(trajectories), "--out", str(out), *budget]
    assert main(argv) == 0
    rows = [r for split in ("train", "eval") for r in read_jsonl(out / f"{split}.jsonl")]
    return sorted(rows, key=lambda r: json.loads(r["label"])["step"]), json.loads((out / "manifest.json").read_text())


def played(out: Path) -> dict:
    (record,) = read_jsonl(out / "episodes.jsonl")
    assert record["status"] == "ok" and record["won"], record.get("error")
    return record


@pytest.mark.slow
@requires_scienceworld
def test_eval_prompts_are_the_exported_prompts_with_and_without_a_budget(tmp_path, capsys):
    trajectories = tmp_path / "gold.jsonl"
    collect = ["data", "collect", "--tasks", TASK, "--variations", "train:1", "--workers", "1"]
    assert main([*collect, "--out", str(trajectories)]) == 0
    (gold,) = read_jsonl(trajectories)
    variation = gold["meta"]["variation"]
    system = {"role": "system", "content": agent_frame("scienceworld").system}

    # with the budget: the data and the harness trim the same steps to the same text
    budget = ["--max-prompt-tokens", str(BUDGET)]
    rows, manifest = exported(trajectories, tmp_path / "fitted", *budget)
    assert [json.loads(r["label"])["step"] for r in rows] == list(range(len(gold["steps"])))
    trimmed = manifest["prompt_tokens"]["train"]["trimmed"] or manifest["prompt_tokens"]["eval"]["trimmed"]
    assert trimmed.get("history_turns_dropped") and trimmed.get("observations_clipped"), manifest
    episode = ["eval", "episodes", "--env", "scienceworld", "--split", "train", "--tasks", TASK]
    episode += ["--variations", str(variation), "--policy", "expert", "--workers", "1", "--no-progress"]
    assert main([*episode, "--out", str(tmp_path / "eval-fitted"), *budget]) == 0
    record = played(tmp_path / "eval-fitted")
    steps = record["transcript"]
    assert [s["prompt"] for s in steps] == [r["prompt"][-1]["content"] for r in rows]
    assert all(r["prompt"][0] == system for r in rows)
    assert all(s["prompt_tokens"] <= BUDGET for s in steps)
    run = json.loads((tmp_path / "eval-fitted" / "run.json").read_text())
    assert run["max_prompt_tokens"] == BUDGET and run["tokenizer"] is None

    # without one: the export's default limit trims nothing here, the harness renders unfitted
    whole_rows, whole_manifest = exported(trajectories, tmp_path / "whole")
    assert not whole_manifest["prompt_tokens"]["train"]["trimmed"]
    task = EnvTask("scienceworld", TASK, variation, split="train")
    options = expert_options("scienceworld")
    EpisodeRunner("scienceworld", [task], ExpertPolicy(), tmp_path / "eval-whole", workers=1, env_options=options).run()
    whole = [s["prompt"] for s in played(tmp_path / "eval-whole")["transcript"]]
    assert whole == [r["prompt"][-1]["content"] for r in whole_rows]
    # the budget did change the later prompts (so the first comparison can fail), not the first ones
    changed = [i for i, (a, b) in enumerate(zip(whole, (s["prompt"] for s in steps))) if a != b]
    assert changed and changed[0] > 0
    capsys.readouterr()

    # a run directory keeps its budget: resuming with another one is refused
    with pytest.raises(UsageError, match="different max_prompt_tokens"):
        EpisodeRunner(
            "scienceworld", [task], ExpertPolicy(), tmp_path / "eval-fitted", env_options=options, max_prompt_tokens=600
        ).run()


def test_a_prompt_that_cannot_fit_ends_its_episode_with_a_clear_status(tmp_path):
    service = StandInWebShop().start()
    try:
        tasks = resolve_episodes("webshop", split="test", variations=[0, 1])
        options = {"url": service.url}
        runner = EpisodeRunner("webshop", tasks, ExpertPolicy(), tmp_path, env_options=options, max_prompt_tokens=20)
        summary = runner.run()
        records = list(read_jsonl(tmp_path / "episodes.jsonl"))
        assert [r["status"] for r in records] == [OVER_BUDGET] * 2
        assert records[0]["error"].startswith("step 0: the prompt cannot fit --max-prompt-tokens 20")
        assert summary["prompt_over_budget"] == 2 and summary["errors"] == 2 and runner.stats.policy_calls == 0
        assert "could not fit --max-prompt-tokens 20" in (tmp_path / "summary.md").read_text()
        # a final outcome of these settings: resuming does not play it again
        again = EpisodeRunner("webshop", tasks, ExpertPolicy(), tmp_path, env_options=options, max_prompt_tokens=20)
        assert again.run()["prompt_over_budget"] == 2 and again.stats.episodes == 0
    finally:
        service.stop()
    with pytest.raises(UsageError, match="pass --max-prompt-tokens too"):
        EpisodeRunner("webshop", tasks, ExpertPolicy(), tmp_path / "x", tokenizer="gpt2")
    with pytest.raises(UsageError, match="must be positive"):
        EpisodeRunner("webshop", tasks, ExpertPolicy(), tmp_path / "x", max_prompt_tokens=0)
