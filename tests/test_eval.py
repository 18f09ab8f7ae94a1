"""Evaluation: live episodes (expert, scripted and tiny-model policies), crash and hang recovery,
resuming, offline next-action and judgment accuracy, the CLI's errors, and reports."""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from pathlib import Path

import pytest

from data_tools.samplers import make_sampler
from openrlhf_act.actions import Completion
from openrlhf_act.envs.base import EnvTask
from openrlhf_act.envs.registry import expert_options, resolve_episodes
from openrlhf_act.errors import UsageError
from openrlhf_act.eval.episodes import EpisodeRunner
from openrlhf_act.eval.policies import ExpertPolicy, make_policy, with_thinking
from openrlhf_act.files import read_jsonl
from openrlhf_act.prompts import agent_messages, judgment_messages, reverse_candidates
from openrlhf_act.schema import JudgmentLabel, NextActionLabel, State, decode_judgment_label, encode_label
from openrlhf_act.states import StateConfig
from tests.conftest import have, requires_scienceworld, requires_vllm
from tests.test_envs import ALFWORLD_GAME, StandInWebShop, requires_alfworld_game


class ScriptedPolicy:
    """A policy for tests: ``reply(request)`` decides each response (a text, or a Completion with its
    finish reason); counts calls like a real one."""

    name = "scripted"
    needs_expert = False

    def __init__(self, reply):
        self.reply = reply
        self.calls = 0
        self.requests = []

    def respond(self, requests):
        self.calls += 1
        self.requests += requests
        replies = [self.reply(r) for r in requests]
        return [r if isinstance(r, Completion) else Completion(r, "stop") for r in replies]

    def describe(self):
        return {"policy": self.name}

    def close(self):
        pass


def cli(*argv: str) -> int:
    from openrlhf_act.commands import eval as eval_command

    parser = argparse.ArgumentParser()
    eval_command.configure(parser)
    args = parser.parse_args(list(argv))
    return args.func(args)


# ---- live episodes: ScienceWorld ------------------------------------------------------------------
@pytest.fixture(scope="module")
def expert_run(tmp_path_factory):
    if not (have("scienceworld") and __import__("shutil").which("java")):
        pytest.skip("scienceworld and Java 17 are needed")
    from openrlhf_act.envs.scienceworld import FAST_TASKS

    out = tmp_path_factory.mktemp("expert-run")
    tasks = resolve_episodes("scienceworld", split="test", tasks=list(FAST_TASKS), episodes=1)
    runner = EpisodeRunner(
        "scienceworld",
        tasks,
        ExpertPolicy(),
        out,
        workers=2,
        env_options=expert_options("scienceworld"),
        progress=False,
    )
    return runner, runner.run(), out, tasks


@pytest.mark.slow
@requires_scienceworld
def test_expert_scores_100_on_fast_scienceworld_tasks(expert_run):
    from openrlhf_act.envs.scienceworld import FAST_TASKS

    runner, summary, out, _ = expert_run
    test = summary["splits"]["test"]
    assert set(test["tasks"]) == set(FAST_TASKS)
    assert test["micro"]["success_rate"] == 100.0 and test["micro"]["mean_score"] == 100.0
    assert summary["errors"] == 0 and runner.stats.episodes == len(FAST_TASKS)
    records = list(read_jsonl(out / "episodes.jsonl", log=True))
    step = records[0]["transcript"][0]
    assert {"prompt", "response", "action", "observation", "score", "valid"} <= set(step)
    assert step["response"] == f"Action: {step['action']}" and step["prompt"].startswith("Task: ")
    assert (out / "summary.md").read_text().count("| 100.00 | 100.00 |") == len(FAST_TASKS)
    # the first policy call serves both workers' first episodes (later ones share calls when their
    # steps are pending together)
    assert runner.stats.policy_calls < runner.stats.env_steps


@pytest.mark.slow
@requires_scienceworld
def test_finished_episodes_are_skipped_on_restart(expert_run):
    _, summary, out, tasks = expert_run
    with open(out / "episodes.jsonl", "a") as handle:
        handle.write('{"episode": "cut short by a cra')  # an interrupted append
    again = EpisodeRunner("scienceworld", tasks, ExpertPolicy(), out, env_options=expert_options("scienceworld"))
    assert again.run()["splits"] == summary["splits"]
    assert again.stats.episodes == 0 and again.stats.policy_calls == 0
    assert (out / "episodes.jsonl").read_text().endswith("\n")
    with pytest.raises(UsageError, match="different"):
        EpisodeRunner("scienceworld", tasks, ExpertPolicy(), out, max_steps=3).run()


class Saboteur(ExpertPolicy):
    """The expert, except that on its ``at``-th call it kills (or freezes) worker 0's JVM."""

    def __init__(self, at: int, sig: int):
        super().__init__()
        self.at, self.sig, self.runner, self.victims = at, sig, None, []

    def respond(self, requests):
        if self.calls + 1 == self.at:
            worker = self.runner.slots[0].worker
            self.victims += list(worker.child_pids)
            for pid in worker.child_pids:
                os.kill(pid, self.sig)
        return super().respond(requests)


@pytest.mark.slow
@requires_scienceworld
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP], ids=["jvm-killed", "jvm-hung"])
def test_a_crashed_or_hung_environment_is_replaced_and_the_episode_retried(tmp_path, sig):
    tasks = resolve_episodes("scienceworld", split="test", tasks=["find-non-living-thing"], episodes=2)
    policy = Saboteur(at=3, sig=sig)
    runner = EpisodeRunner(
        "scienceworld",
        tasks,
        policy,
        tmp_path,
        workers=2,
        env_options=expert_options("scienceworld"),
        step_timeout=8,
        progress=False,
    )
    policy.runner = runner
    started = time.monotonic()
    summary = runner.run()
    assert time.monotonic() - started < 240
    assert policy.victims, "the saboteur found no JVM to stop"
    assert runner.stats.retries >= 1 and summary["errors"] == 0
    assert summary["splits"]["test"]["micro"]["success_rate"] == 100.0
    if sig == signal.SIGSTOP:
        assert runner.stats.worker_restarts >= 1
        for pid in policy.victims:  # the frozen JVM was killed, not left behind
            assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


@pytest.mark.slow
@requires_scienceworld
def test_errors_are_reported_when_retries_run_out(tmp_path):
    tasks = resolve_episodes("scienceworld", split="test", tasks=["find-non-living-thing"], episodes=1)
    policy = Saboteur(at=2, sig=signal.SIGKILL)
    runner = EpisodeRunner(
        "scienceworld", tasks, policy, tmp_path, workers=1, env_options=expert_options("scienceworld"), retries=0
    )
    policy.runner = runner
    summary = runner.run()
    assert summary["errors"] == 1 and summary["splits"]["test"]["micro"]["finished"] == 0
    (record,) = read_jsonl(tmp_path / "episodes.jsonl", log=True)
    assert record["status"] == "error" and "JVM" in record["error"]
    assert "environment error" in (tmp_path / "summary.md").read_text()


@pytest.mark.slow
@requires_vllm
@requires_scienceworld
def test_tiny_model_plays_through_vllm(tmp_path, tiny_model):
    """The harness completes with a real (random) model: transcripts recorded, honest scores; the thinking
    setting (a prompting baseline) reaches the chat template and the summary."""
    tasks = resolve_episodes("scienceworld", split="test", tasks=["find-animal"], episodes=2)
    options = with_thinking({"model": tiny_model, "max_tokens": 24, "max_model_len": 2048}, False)
    policy = make_policy("vllm", options, make_sampler=make_sampler)
    try:
        runner = EpisodeRunner("scienceworld", tasks, policy, tmp_path, workers=2, max_steps=3, progress=False)
        summary = runner.run()
    finally:
        policy.close()
    micro = summary["splits"]["test"]["micro"]
    assert micro["finished"] == 2 and micro["mean_steps"] == 3.0
    assert micro["success_rate"] == 0.0 and micro["mean_score"] < 50
    assert summary["prompting"] == {"thinking": "off"}
    records = list(read_jsonl(tmp_path / "episodes.jsonl", log=True))
    assert all(len(r["transcript"]) == 3 for r in records)
    assert runner.stats.policy_calls == 3, "both episodes share each of the 3 policy calls"
    for step in records[0]["transcript"]:
        assert step["response"] is not None and step["observation"]


# ---- live episodes: ALFWorld and WebShop ---------------------------------------------------------
@requires_alfworld_game
def test_alfworld_expert_through_the_cli(tmp_path, capsys):
    assert (
        cli(
            "episodes",
            "--env",
            "alfworld",
            "--games",
            str(ALFWORLD_GAME),
            "--policy",
            "expert",
            "--out",
            str(tmp_path),
            "--no-progress",
        )
        == 0
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["splits"]["-"]["micro"]["success_rate"] == 100.0
    assert "success 100.00%" in capsys.readouterr().out


def _shopper(request) -> str:
    """Buys what the stand-in's goals ask for: search, open the product, pick the option, buy."""
    admissible = request.admissible or ()
    if "search[<keywords>]" in admissible:
        goal = request.messages[-1]["content"].split("Task: ", 1)[1].split("\n", 1)[0]
        return f"Thought: search the key words.\nAction: search[{' '.join(goal.split()[2:5])}]"
    step = int(request.key.rsplit("#", 1)[1])
    for product, option in (("b001", "size 9"), ("b002", "large"), ("b003", "medium")):
        if f"click[{product}]" in admissible:
            return f"Action: click[{product}]"
        if step == 2 and f"click[{option}]" in admissible:
            return f"Action: click[{option}]"
    return "Action: click[buy now]"


def test_webshop_episodes_against_a_local_service(tmp_path):
    service = StandInWebShop().start()
    try:
        tasks = resolve_episodes("webshop", split="test", variations=[0, 1, 2])
        policy = ScriptedPolicy(_shopper)
        runner = EpisodeRunner("webshop", tasks, policy, tmp_path, workers=2, env_options={"url": service.url})
        summary = runner.run()
    finally:
        service.stop()
    test = summary["splits"]["test"]
    assert test["micro"]["finished"] == 3 and test["micro"]["success_rate"] == 100.0
    assert runner.stats.policy_calls < runner.stats.env_steps


def test_a_pool_serves_several_runs_and_outlives_them(tmp_path):
    """Runs through one pool reuse its running workers; a worker left with an unanswered request
    is replaced before the next run; options that differ from the pool's are refused."""
    from openrlhf_act.envs.pool import START, WorkerPool

    service = StandInWebShop().start()
    options = {"url": service.url}
    tasks = resolve_episodes("webshop", split="test", variations=[0, 1, 2])
    try:
        with WorkerPool("webshop", options, 2) as pool:
            pids = [w.pid for w in pool.workers]
            for name in ("first", "second"):
                runner = EpisodeRunner("webshop", tasks, ScriptedPolicy(_shopper), tmp_path / name, pool=pool)
                assert runner.workers == 2
                assert runner.run()["splits"]["test"]["micro"]["success_rate"] == 100.0
                assert [w.pid for w in pool.workers] == pids and all(w.process.is_alive() for w in pool.workers)
            pool.workers[0].send(START, tasks[0], timeout=30)  # as if a run were interrupted here
            pool.settle()
            assert pool.workers[0].pending is None and pool.workers[0].pid != pids[0]
            assert pool.workers[1].pid == pids[1]
            runner = EpisodeRunner("webshop", tasks, ScriptedPolicy(_shopper), tmp_path / "third", pool=pool)
            assert runner.run()["splits"]["test"]["micro"]["finished"] == 3
            with pytest.raises(UsageError, match="pool runs webshop"):
                EpisodeRunner("webshop", tasks, ScriptedPolicy(_shopper), tmp_path / "x", env_options={}, pool=pool)
            workers = [w.process for w in pool.workers]
        assert not any(p.is_alive() for p in workers), "closing the pool ends its workers"
    finally:
        service.stop()


def test_unparseable_replies_count_and_end_at_the_step_limit(tmp_path):
    service = StandInWebShop().start()
    try:
        tasks = resolve_episodes("webshop", split="test", variations=[0])
        runner = EpisodeRunner(
            "webshop",
            tasks,
            ScriptedPolicy(lambda r: "I am not sure.\nMaybe later."),
            tmp_path,
            max_steps=4,
            env_options={"url": service.url},
        )
        summary = runner.run()
    finally:
        service.stop()
    (record,) = read_jsonl(tmp_path / "episodes.jsonl", log=True)
    assert record["unparseable"] == 4 and record["steps"] == 4 and not record["won"]
    assert record["transcript"][1]["prompt"].count("No action was recognised") == 1
    assert summary["splits"]["test"]["tasks"]["webshop"]["unparseable_per_step"] == 1.0


# ---- CLI errors before anything starts ------------------------------------------------------------
def test_bad_requests_fail_before_anything_starts(tmp_path):
    out = str(tmp_path / "run")
    with pytest.raises(UsageError, match="not in the 'test' split"):
        cli("episodes", "--env", "webshop", "--variations", "498-501", "--policy", "expert", "--out", out)
    with pytest.raises(UsageError, match="no expert"):
        cli("episodes", "--env", "webshop", "--policy", "expert", "--out", out)
    with pytest.raises(UsageError, match="unknown ALFWorld task type"):
        cli("episodes", "--env", "alfworld", "--tasks", "juggle", "--policy", "expert", "--out", out)
    with pytest.raises(UsageError, match="unreachable"):
        cli(
            "episodes",
            "--env",
            "webshop",
            "--variations",
            "0",
            "--policy",
            "vllm",
            "--model",
            "x",
            "--out",
            out,
            "--env-option",
            "url=http://127.0.0.1:9",
            "--workers",
            "1",
            "--no-progress",
        )
    with pytest.raises(UsageError, match="KEY=VALUE"):
        cli("episodes", "--env", "webshop", "--policy", "expert", "--out", out, "--env-option", "url")
    assert not (tmp_path / "run" / "episodes.jsonl").exists() or not list(
        read_jsonl(tmp_path / "run" / "episodes.jsonl", log=True)
    )


@pytest.mark.slow
@requires_scienceworld
def test_unknown_scienceworld_task_and_variation_are_clear_errors(tmp_path):
    with pytest.raises(UsageError, match="unknown ScienceWorld task 'find-unicorn'"):
        cli(
            "episodes", "--env", "scienceworld", "--tasks", "find-unicorn", "--policy", "expert", "--out", str(tmp_path)
        )
    with pytest.raises(UsageError, match="not in the 'test' split"):
        cli(
            "episodes",
            "--env",
            "scienceworld",
            "--tasks",
            "find-animal",
            "--variations",
            "0",
            "--policy",
            "expert",
            "--out",
            str(tmp_path),
        )
    assert not list(tmp_path.iterdir())


# ---- offline: next action and judgment -----------------------------------------------------------
def _state(i: int, task: str = "find-animal") -> State:
    return State(
        task_id=f"{task}/v{i}",
        env="scienceworld",
        task="find an animal",
        history=(("You are in the hallway.", "look around"),),
        observation=f"You see a door and a jar {i}.",
        expert_action="open door" if i % 2 else "focus on jar",
        step=i,
        admissible=("open door", "focus on jar", "look around"),
    )


def _next_action_rows(path: Path) -> None:
    rows = []
    for i in range(6):
        state = _state(i, "find-animal" if i < 4 else "boil")
        label = NextActionLabel(state.expert_action, state.admissible, state.task_id, state.env, state.step)
        rows.append({"prompt": agent_messages(state), "label": encode_label(label), "datasource": "scienceworld"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_next_action_accuracy(tmp_path):
    from openrlhf_act.eval.next_action import run_next_action

    data = tmp_path / "eval.jsonl"
    _next_action_rows(data)
    expert = run_next_action(data, ExpertPolicy(), tmp_path / "expert", progress=False)
    assert expert["overall"]["accuracy"] == 100.0
    fixed = ScriptedPolicy(lambda r: "Thought: doors lead places.\nAction: open door")
    summary = run_next_action(data, fixed, tmp_path / "fixed", chunk_size=4, progress=False)
    assert summary["overall"] == {
        "rows": 6,
        "accuracy": 50.0,
        "admissible": 100.0,
        "malformed": 0.0,
        "mean_reward": pytest.approx((3 * 1.0 + 3 * 0.1) / 6),
    }
    assert summary["envs"]["scienceworld"]["tasks"]["boil"]["rows"] == 2 and fixed.calls == 2
    again = ScriptedPolicy(lambda r: "Action: open door")
    assert run_next_action(data, again, tmp_path / "fixed", progress=False)["overall"]["accuracy"] == 50.0
    assert again.calls == 0, "a finished run asks nothing again"
    (tmp_path / "broken.jsonl").write_text('{"prompt": "not messages", "label": "{}"}\n')
    from openrlhf_act.errors import DataError

    with pytest.raises(DataError, match=r"broken\.jsonl:1"):
        run_next_action(tmp_path / "broken.jsonl", ExpertPolicy(), tmp_path / "broken", progress=False)


def _judgment_rows(path: Path) -> list[dict]:
    """Three pairs: one in both orders (two rows sharing pair_id), two single rows (gold 1, gold 2)."""
    rows = []
    for i, orders in ((0, [(0, 1), (1, 0)]), (1, [(0, 1)]), (2, [(1, 0)])):
        state = _state(i)
        pair = (state.expert_action, "move jar to kitchen")
        for order in orders:
            candidates = tuple(pair[j] for j in order)
            label = JudgmentLabel(
                candidates.index(state.expert_action) + 1,
                candidates,
                state.expert_action,
                f"p{i}",
                state.task_id,
                state.env,
                state.step,
            )
            rows.append({"prompt": judgment_messages(state, candidates), "label": encode_label(label)})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def _pick_expert(request) -> str:
    for line in request.messages[-1]["content"].splitlines():
        if line.startswith("Action ") and line.split(": ", 1)[1] == request.expert:
            return f"<think>the expert's</think><answer>{line.split(':')[0]}</answer>"
    return "no idea"


def test_judgment_accuracy_position_bias_and_swap_consistency(tmp_path):
    from openrlhf_act.eval.judgment import run_judgment

    data = tmp_path / "eval.jsonl"
    rows = _judgment_rows(data)
    asked = json.loads(data.read_text().splitlines()[2])  # a single row: asked again in reverse order
    content, label = reverse_candidates(asked["prompt"][-1]["content"], decode_judgment_label(asked["label"]))
    assert content == judgment_messages(_state(1), label.candidates)[-1]["content"]
    assert label.candidates[label.answer - 1] == _state(1).expert_action
    first = ScriptedPolicy(lambda r: "<answer>Action 1</answer>")
    summary = run_judgment(data, first, tmp_path / "first", progress=False)["overall"]
    assert summary["rows"] == len(rows) == 4
    assert summary["pred_first"] == 100.0 and summary["gold_first"] == 50.0 and summary["accuracy"] == 50.0
    assert summary["accuracy_gold_first"] == 100.0 and summary["accuracy_gold_second"] == 0.0
    assert summary["swap_consistency"] == 0.0 and summary["swap_checked"] == 4
    assert len(first.requests) == 6, "the both-orders pair is not asked again; the two single rows are"
    judge = ScriptedPolicy(_pick_expert)
    summary = run_judgment(data, judge, tmp_path / "judge", progress=False)["overall"]
    assert summary["accuracy"] == 100.0 and summary["swap_consistency"] == 100.0 and summary["malformed"] == 0.0
    hedge = ScriptedPolicy(lambda r: "<answer>Action 1 or Action 2</answer>")
    summary = run_judgment(data, hedge, tmp_path / "hedge", swap=False, progress=False)["overall"]
    assert summary["malformed"] == 100.0 and summary["swap_checked"] == 0 and len(hedge.requests) == 4


# ---- report -------------------------------------------------------------------------------------
def test_report_compares_runs_with_the_paper(tmp_path):
    from openrlhf_act.eval.judgment import run_judgment

    service = StandInWebShop().start()
    try:
        tasks = resolve_episodes("webshop", split="test", variations=[0, 1])
        EpisodeRunner(
            "webshop",
            tasks,
            ScriptedPolicy(_shopper),
            tmp_path / "shop",
            workers=1,
            env_options={"url": service.url},
            progress=False,
        ).run()
    finally:
        service.stop()
    data = tmp_path / "eval.jsonl"
    _judgment_rows(data)
    run_judgment(data, ScriptedPolicy(_pick_expert), tmp_path / "judge", progress=False)
    plots = have("matplotlib")
    args = ["report", f"mine={tmp_path / 'shop'}", f"mine={tmp_path / 'judge'}", "--out", str(tmp_path / "report")]
    assert cli(*args, *([] if plots else ["--no-plots"])) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| **mine** | - | - | - | - | 100.00 |" in report  # a hand-picked run: its own column, not the paper's
    assert "paper v2: ACT -> IL -> RL | 96.19 ± 0.67" in report
    assert "free reasoning | 400 | 86.50" in report
    if plots:
        for name in ("per_task_success.png", "score_distribution.png", "position_bias.png"):
            assert (tmp_path / "report" / name).stat().st_size > 1000
    with pytest.raises(UsageError, match="not an evaluation run"):
        cli("report", str(tmp_path), "--out", str(tmp_path / "r2"), "--no-plots")


def test_scienceworld_state_matches_the_data_pipeline():
    """The evaluation prompt is the IL/sampling prompt: make_state over the live turns + agent_messages."""
    from openrlhf_act.states import make_state

    config = StateConfig(window=2)
    turns = [("obs a", "act a"), ("obs b", "act b"), ("obs c", "act c")]
    state = make_state(
        task_id="t/v0", env="scienceworld", task="do it", turns=turns, observation="now", step=3, config=config
    )
    assert state.omitted_turns == 1 and agent_messages(state)[-1]["content"].startswith("Task: do it")
    assert EnvTask("scienceworld", "t", 0).task_id == "t/v0"
