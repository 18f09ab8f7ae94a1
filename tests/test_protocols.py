"""Evaluation protocols: each preset selects exactly its documented episodes, `eval episodes --protocol`
refuses flags that contradict it and records it, per-task step limits, the highest-score metric, and
`eval report` keeping protocols apart and averaging seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openrlhf_act.errors import UsageError
from openrlhf_act.eval import paper_results
from openrlhf_act.eval.episodes import EpisodeRunner
from openrlhf_act.eval.protocols import (
    ETO_SCIENCEWORLD_DEV,
    ETO_SCIENCEWORLD_STEPS,
    ETO_WEBSHOP_TEST,
    PROTOCOLS,
    get_protocol,
)
from openrlhf_act.eval.summary import summarize_episodes, summary_markdown, write_summary
from openrlhf_act.files import read_jsonl, write_json
from tests.conftest import have, requires_scienceworld
from tests.test_envs import StandInWebShop, _fake_alfworld_data, requires_alfworld_game
from tests.test_eval import ScriptedPolicy, cli


# ---- the presets -------------------------------------------------------------------------------
def test_presets_document_their_sources_and_the_paper_columns():
    assert set(PROTOCOLS) == {
        "sciworld-official",
        "sciworld-eto",
        "alfworld-seen",
        "alfworld-unseen",
        "webshop-500",
        "webshop-eto200",
    }
    for protocol in PROTOCOLS.values():
        assert protocol.source and protocol.description and protocol.figure in ("success_rate", "mean_score")
        assert protocol.score_metric in ("final", "max")
    for benchmark, (name, split) in paper_results.PROTOCOLS.items():
        assert PROTOCOLS[name].paper_column == benchmark and split in PROTOCOLS[name].splits
    eto = get_protocol("sciworld-eto")
    assert len(ETO_SCIENCEWORLD_STEPS) == 24 and set(ETO_SCIENCEWORLD_DEV) == set(ETO_SCIENCEWORLD_STEPS)
    assert min(ETO_SCIENCEWORLD_STEPS.values()) == 10 and max(ETO_SCIENCEWORLD_STEPS.values()) == 120
    assert all(len(v) <= 10 for v in ETO_SCIENCEWORLD_DEV.values())
    assert eto.env_options == {"simplification": "easy"} and eto.score_metric == "max"
    with pytest.raises(UsageError, match="unknown protocol 'alfworld'"):
        get_protocol("alfworld")
    with pytest.raises(UsageError, match="no split 'valid_unseen'"):
        get_protocol("alfworld-seen").selection("valid_unseen")


def test_webshop_presets_select_their_goals():
    five_hundred = get_protocol("webshop-500").episodes()
    assert [t.variation for t in five_hundred] == list(range(500))
    assert {t.split for t in five_hundred} == {"test"} and get_protocol("webshop-500").step_limits() == 15
    eto = get_protocol("webshop-eto200")
    goals = eto.episodes("test")
    assert len(goals) == eto.selection().count == 200 == len({t.variation for t in goals})
    assert [t.variation for t in goals] == list(ETO_WEBSHOP_TEST) and eto.step_limits() == 10
    assert {t.split for t in goals} == {None}, "ETO's goals lie across WebShop's splits"


@requires_alfworld_game
def test_alfworld_presets_select_the_split_as_alfworld_does(tmp_path):
    """The 140 / 134 games exist only on a user's $ALFWORLD_DATA: here, the preset's rules on a fake tree."""
    _fake_alfworld_data(tmp_path)
    seen, unseen = get_protocol("alfworld-seen"), get_protocol("alfworld-unseen")
    assert (seen.selection().count, unseen.selection().count) == (140, 134)
    assert seen.step_limits() == unseen.step_limits() == 50
    games = seen.episodes(options={"data_dir": str(tmp_path)})
    assert [t.name for t in games] == ["pick_and_place_simple", "pick_heat_then_place_in_recep"]
    assert {t.split for t in games} == {"valid_seen"}
    assert len(unseen.episodes(options={"data_dir": str(tmp_path)})) == 1


@pytest.mark.slow
@requires_scienceworld
def test_scienceworld_presets_select_their_documented_counts():
    """ETO's test set is the first 10 variations of each of its 24 tasks in ScienceWorld's test split (211);
    its dev list lies in the dev split (194); the official splits hold 1,819 / 1,796 variations."""
    from openrlhf_act.envs.scienceworld import ScienceWorld

    with ScienceWorld() as env:
        for name in ("sciworld-eto", "sciworld-official"):
            protocol = get_protocol(name)
            for split, selection in protocol.splits.items():
                episodes = protocol.episodes(split, env=env)
                assert len(episodes) == selection.count, (name, split)
                assert {t.split for t in episodes} == {split}
        test = get_protocol("sciworld-eto").episodes("test", env=env)
        assert {t.name for t in test} == set(ETO_SCIENCEWORLD_STEPS)
        assert [t.variation for t in test if t.name == "boil"] == list(range(21, 30))


# ---- eval episodes --protocol ----------------------------------------------------------------------
def test_flags_that_contradict_a_protocol_are_usage_errors(tmp_path):
    out = str(tmp_path / "run")
    base = ("episodes", "--policy", "expert", "--out", out, "--protocol")
    for extra, message in (
        (("webshop-500", "--tasks", "webshop"), "fixes the episodes: drop --tasks"),
        (("webshop-500", "--variations", "0-9"), "drop --variations"),
        (("webshop-500", "--max-steps", "20"), r"fixes the step limit \(15\)"),
        (("webshop-500", "--env", "alfworld"), "plays webshop, not alfworld"),
        (("webshop-500", "--split", "dev"), "no split 'dev'"),
        (("sciworld-eto", "--env-option", "simplification="), "sets simplification=easy"),
        (("sciworld-eto", "--max-steps", "30"), "fixes the step limit"),
        (("webshop-5000",), "unknown protocol"),
    ):
        with pytest.raises(UsageError, match=message):
            cli(*base, *extra)
    with pytest.raises(UsageError, match="give --env or --protocol"):
        cli("episodes", "--policy", "expert", "--out", out)
    assert not (tmp_path / "run").exists()


def test_eval_protocols_lists_the_presets_with_their_counts(capsys):
    assert cli("protocols") == 0
    out = capsys.readouterr().out
    assert "sciworld-eto (scienceworld)" in out and "test 211, dev 194" in out
    assert "valid_seen 140" in out and "valid_unseen 134" in out and "test 500" in out and "test 200" in out
    assert "steps: per task, 10-120" in out


def test_a_protocol_run_records_its_protocol_and_per_task_step_limits(tmp_path):
    service = StandInWebShop().start()
    protocol = get_protocol("webshop-eto200")
    try:
        tasks = protocol.episodes()[:2]
        runner = EpisodeRunner(
            "webshop",
            tasks,
            ScriptedPolicy(lambda r: "no idea"),
            tmp_path,
            workers=1,
            env_options={"url": service.url},
            max_steps={"webshop": 3},
            protocol=protocol.record(),
            progress=False,
        )
        summary = runner.run()
        with pytest.raises(UsageError, match="no step limit for task"):
            EpisodeRunner("webshop", tasks, ScriptedPolicy(str), tmp_path / "x", max_steps={"boil": 3})
    finally:
        service.stop()
    assert all(r["steps"] == 3 for r in read_jsonl(tmp_path / "episodes.jsonl", log=True))
    record = {"name": "webshop-eto200", "split": "test", "episodes": 200, "score_metric": "final"}
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["protocol"] == record and run["max_steps"] == {"webshop": 3}
    assert summary["protocol"] == record and summary["seed"] == 0
    assert "Protocol **webshop-eto200** test (200 episodes" in (tmp_path / "summary.md").read_text()


def test_the_eto_score_is_the_highest_an_episode_reached():
    """ScienceWorld ends a failed episode at -100: ETO keeps the best score reached, the default the final one."""
    record = {
        "episode": "scienceworld:test:boil/v21",
        "status": "ok",
        "split": "test",
        "task": "boil",
        "score": -100.0,
        "normalized_score": 0.0,
        "won": False,
        "steps": 2,
        "invalid_actions": 0,
        "unparseable": 0,
        "transcript": [{"score": 40.0}, {"score": -100.0}],
    }
    eto = {"env": "scienceworld", "protocol": get_protocol("sciworld-eto").record("test")}
    assert summarize_episodes([record], config=eto)["splits"]["test"]["micro"]["mean_score"] == 40.0
    plain = summarize_episodes([record], config={"env": "scienceworld"})
    assert plain["splits"]["test"]["micro"]["mean_score"] == 0.0 and plain["protocol"] is None


# ---- eval report -----------------------------------------------------------------------------------
def _fake_run(directory: Path, env: str, protocol: str | None, split: str, won: list[bool], seed: int = 0) -> None:
    """A finished run directory: run.json, episodes.jsonl and its summary, without playing anything."""
    directory.mkdir(parents=True)
    config = {
        "kind": "episodes",
        "env": env,
        "policy": {"policy": "fake"},
        "protocol": get_protocol(protocol).record(split) if protocol else None,
        "seed": seed,
    }
    records = [
        {
            "episode": f"{env}:{split}:t/v{i}",
            "status": "ok",
            "split": split,
            "task": "t",
            "score": float(w),
            "normalized_score": float(w),
            "won": w,
            "steps": 1,
            "invalid_actions": 0,
            "unparseable": 0,
            "transcript": [],
        }
        for i, w in enumerate(won)
    ]
    write_json(directory / "run.json", config)
    (directory / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = summarize_episodes(records, config=config)
    write_summary(directory, summary, summary_markdown(summary))


def test_report_keeps_protocols_apart_and_averages_seeds(tmp_path):
    _fake_run(tmp_path / "a0", "alfworld", "alfworld-seen", "valid_seen", [True, True, False, False], seed=0)
    _fake_run(tmp_path / "a1", "alfworld", "alfworld-seen", "valid_seen", [True, True, True, False], seed=1)
    _fake_run(tmp_path / "w500", "webshop", "webshop-500", "test", [True, False])
    _fake_run(tmp_path / "eto", "webshop", "webshop-eto200", "test", [True, True])
    _fake_run(tmp_path / "adhoc", "webshop", None, "test", [False, False, False])
    plots = have("matplotlib")
    runs = [f"act={tmp_path / d}" for d in ("a0", "a1", "w500", "eto", "adhoc")]
    assert cli("report", *runs, "--out", str(tmp_path / "report"), *([] if plots else ["--no-plots"])) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| run |"))
    columns = [c.strip() for c in header.strip("|").split("|")][1:]
    assert columns[:4] == [
        "ALFWorld seen: alfworld-seen valid_seen (140 episodes), success %",
        "ALFWorld unseen: alfworld-unseen valid_unseen (134 episodes), success %",
        "WebShop: webshop-500 test (500 episodes), success %",
        "ScienceWorld: sciworld-eto test (211 episodes), score 0-100",
    ]
    assert columns[4:] == [
        "webshop-eto200 test (200 episodes), success %",
        "webshop test, ad hoc (3 episodes), success %",
    ]
    assert "| **act** | 62.50 ± 17.68 (n=2) | - | 50.00 | - | 100.00 | 0.00 |" in report
    assert "| paper v2: ACT -> IL -> RL | 96.19 ± 0.67 | 91.54 ± 0.35 | 42.80 ± 0.59 | 34.63 ± 0.33 | - | - |" in report
    assert "## alfworld-seen valid_seen (140 episodes), success %: success % / score per task" in report
    assert "| t | 62.5 / 62.5 (n=2) |" in report
    if plots:
        for name in ("benchmarks.png", "per_task_success.png", "score_distribution.png"):
            assert (tmp_path / "report" / name).stat().st_size > 1000
    assert cli("report", runs[0], "--out", str(tmp_path / "v1"), "--paper", "v1", "--no-plots") == 0
    v1 = (tmp_path / "v1" / "report.md").read_text()
    assert "ScienceWorld: scienceworld next-action (held-out states), next-action acc. %" in v1
    with pytest.raises(UsageError, match="seed 0: name them apart"):
        cli("report", runs[0], f"act={tmp_path / 'a0'}", "--out", str(tmp_path / "dup"), "--no-plots")


@requires_alfworld_game
def test_a_protocol_run_through_the_cli(tmp_path, capsys):
    """`eval episodes --protocol` plays the preset's games with its step limit and records the protocol."""
    _fake_alfworld_data(tmp_path / "data")
    out = tmp_path / "run"
    argv = ("episodes", "--protocol", "alfworld-seen", "--env-option", f"data_dir={tmp_path / 'data'}")
    assert cli(*argv, "--policy", "expert", "--out", str(out), "--workers", "1", "--no-progress") == 0
    run = json.loads((out / "run.json").read_text())
    assert run["env"] == "alfworld" and run["max_steps"] == 50 and run["protocol"]["name"] == "alfworld-seen"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["splits"]["valid_seen"]["micro"]["success_rate"] == 100.0
    assert "Protocol **alfworld-seen** valid_seen (140 episodes" in capsys.readouterr().out
