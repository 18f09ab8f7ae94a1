"""Prompts that fit: every emitted row stays within --max-prompt-tokens, counted by the policy's tokenizer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from data_tools.pairs import contrast_rows
from openrlhf_act.cli import main
from openrlhf_act.prompt_budget import PromptBudget, TokenizerCounter, fit_agent_prompts
from openrlhf_act.prompts import agent_frame, agent_messages, judgment_frame
from openrlhf_act.recipe_check import check_recipes
from openrlhf_act.schema import ContrastPair, Outcome, State, Step, Trajectory, decode_judgment_label
from tests.conftest import requires_openrlhf

LIMIT = 600
WORDS = [
    "the",
    "door",
    "kitchen",
    "hallway",
    "thermometer",
    "beaker",
    "water",
    "orange",
    "box",
    "red",
    "green",
    "living",
    "thing",
]
RECIPES = Path(__file__).resolve().parent.parent / "recipes"


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    """A real fast tokenizer with a ChatML template, built offline."""
    from openrlhf_act.devtools.tiny_model import build_tiny_tokenizer

    out = tmp_path_factory.mktemp("tokenizer")
    build_tiny_tokenizer().save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)


def chat_tokens(tokenizer, messages: list[dict[str, str]]) -> int:
    """What OpenRLHF sees: the chat template with the generation prompt, tokenized."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return len(tokenizer.encode(text, add_special_tokens=False))


def words(n: int, seed: int) -> str:
    return " ".join(WORDS[(seed * 7 + i * 3) % len(WORDS)] for i in range(n))


def write_trajectories(path: Path, tasks: int = 8, steps: int = 8, task_text: str = "Boil the water.") -> Path:
    """Observations from a few words to a long page, so some prompts must lose history or be clipped."""
    with open(path, "w", encoding="utf-8") as handle:
        for t in range(tasks):
            steps_ = tuple(
                Step(
                    observation=words(10 + ((t + i) % 4) * 90, t + i),
                    action=f"go to room {i + 1}",
                    admissible=(f"go to room {i + 1}", "look around", "open door"),
                )
                for i in range(steps)
            )
            trajectory = Trajectory(f"fam{t % 3}/v{t}", "scienceworld", task_text, steps_, Outcome(100, True))
            handle.write(trajectory.to_line() + "\n")
    return path


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def state(history: int = 3, observation: str | None = None, task: str = "Boil the water.") -> State:
    turns = tuple((f"turn {i}: " + words(60, i), f"go to room {i}") for i in range(history))
    return State("t/v0", "scienceworld", task, turns, observation or words(200, 9), "go to room 9", step=history)


def test_no_emitted_row_exceeds_the_limit_with_the_tokenizer(tmp_path, tokenizer_dir, tokenizer):
    """Contrast rows (build) and the sft, next_action, dpo and sft_choice exports, tokenized as OpenRLHF does."""
    source = write_trajectories(tmp_path / "traj.jsonl")
    build = tmp_path / "act"
    limit = ["--max-prompt-tokens", str(LIMIT)]
    args = ["data", "build", "--input", str(source), "--out", str(build), "--tokenizer", str(tokenizer_dir), *limit]
    assert main([*args, "--eval-ratio", "0.3"]) == 0
    manifest = json.loads((build / "manifest.json").read_text())
    figures = manifest["prompt_tokens"]
    assert figures["max_prompt_tokens"] == LIMIT and str(tokenizer_dir) in figures["counter"]
    trimmed = sum((Counter(figures[name]["trimmed"]) for name in ("sampling", "train", "eval")), Counter())
    assert trimmed["history_turns_dropped"] > 0 and trimmed["observations_clipped"] > 0  # the limit bites
    outputs = {"contrast": build}
    for kind in ("sft", "next_action", "dpo", "sft_choice"):
        outputs[kind] = tmp_path / kind
        assert main(["data", "export", "--kind", kind, "--build", str(build), "--out", str(outputs[kind])]) == 0
    for kind, folder in outputs.items():
        figures = json.loads((folder / "manifest.json").read_text())["prompt_tokens"]
        for split in ("train", "eval"):
            found = rows(folder / f"{split}.jsonl")
            tokens = [chat_tokens(tokenizer, row["prompt"]) for row in found]
            assert found and max(tokens) <= LIMIT, (kind, split, max(tokens))
            stats = figures[split]
            assert stats["rows"] == len(found) and stats["p50"] <= stats["p95"] <= stats["max"] <= LIMIT
            assert max(tokens) <= stats["max"], (kind, split)  # piece sums never undercount the chat


def test_history_goes_before_the_observation_is_clipped(tokenizer):
    budget = PromptBudget(10_000, TokenizerCounter(tokenizer, "tiny"))
    full = budget.fit(state(), agent_frame("scienceworld"))
    assert full is not None and full.state == state()
    assert 0 <= full.tokens - chat_tokens(tokenizer, full.messages) <= len(full.pieces)  # the sum runs a little high
    bare = chat_tokens(tokenizer, fit_agent_prompts(budget, [state(history=0)])[0].messages)

    newest = replace(state(), history=state().history[2:], omitted_turns=2)
    limit = (
        chat_tokens(tokenizer, agent_messages(newest)) + 30
    )  # the newest turn fits (with the sum's slack), two don't
    budget = PromptBudget(limit, TokenizerCounter(tokenizer, "tiny"))
    fitted = budget.fit(state(), agent_frame("scienceworld"))
    assert fitted is not None and fitted.state == newest  # the oldest turns went; the observation is whole
    assert budget.trimmed == {"history_turns_dropped": 2} and chat_tokens(tokenizer, fitted.messages) <= limit

    budget = PromptBudget(bare - 60, TokenizerCounter(tokenizer, "tiny"))
    fitted = budget.fit(state(), agent_frame("scienceworld"))
    assert fitted is not None and fitted.state.history == () and chat_tokens(tokenizer, fitted.messages) <= bare - 60
    observation = fitted.state.observation
    assert "characters omitted ...]" in observation  # clipped in the middle: head and tail kept
    assert observation[:20] == state().observation[:20] and observation[-20:] == state().observation[-20:]
    assert budget.trimmed == {"history_turns_dropped": 3, "observations_clipped": 1}


def test_task_and_candidates_are_never_cut_and_impossible_rows_are_dropped(tokenizer):
    long_alternative = "take the " + words(40, 3)
    pairs = [ContrastPair(state(observation=words(400, i)), (long_alternative,)) for i in range(6)]
    pairs.append(ContrastPair(state(), ("look " + words(900, 1),)))  # a candidate that cannot fit
    budget = PromptBudget(LIMIT, TokenizerCounter(tokenizer, "tiny"))
    found = contrast_rows(pairs, seed=0, split="train", budget=budget)
    assert len(found) == 6 and budget.dropped == {f"contrast_prompt_over_{LIMIT}_tokens": 1}
    assert Counter(decode_judgment_label(r["label"]).answer for r in found) == {1: 3, 2: 3}  # still balanced
    for row in found:
        label = decode_judgment_label(row["label"])
        user = row["prompt"][1]["content"]
        assert user.startswith("Task: Boil the water.\n") and chat_tokens(tokenizer, row["prompt"]) <= LIMIT
        assert f"Action {label.answer}: go to room 9" in user and long_alternative in user
        assert row["prompt"][0]["content"] == judgment_frame("scienceworld", label.candidates).system


def test_rows_whose_task_cannot_fit_are_dropped_and_counted(tmp_path):
    """With the estimate (no tokenizer): a build drops the states of a task that alone exceeds the limit."""
    source = write_trajectories(tmp_path / "traj.jsonl", tasks=6, steps=4)
    huge = write_trajectories(tmp_path / "huge.jsonl", tasks=1, steps=4, task_text="Boil. " + words(2000, 5))
    huge_line = huge.read_text().replace('"fam0/v0"', '"huge/v0"')
    source.write_text(source.read_text() + huge_line)
    out = tmp_path / "act"
    assert main(["data", "build", "--input", str(source), "--out", str(out), "--max-prompt-tokens", "1500"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["drops"]["prompt_budget"] == {"agent_prompt_over_1500_tokens": 4}
    assert manifest["counts"]["pairs"]["train"] + manifest["counts"]["pairs"]["eval"] == 24
    assert "estimate" in manifest["prompt_tokens"]["counter"]
    for split in ("train", "eval"):
        assert manifest["prompt_tokens"][split]["rows"] == len(rows(out / f"{split}.jsonl"))


def write_act_data(data: Path, content_chars: int, manifest_max: int | None = None) -> None:
    (data / "act").mkdir(parents=True, exist_ok=True)
    prompt = [{"role": "system", "content": "Judge."}, {"role": "user", "content": "x" * content_chars}]
    for split in ("train", "eval"):
        (data / "act" / f"{split}.jsonl").write_text(json.dumps({"prompt": prompt, "label": "{}"}) + "\n")
    if manifest_max is not None:
        figures = {
            split: {"rows": 1, "p50": manifest_max, "p95": manifest_max, "max": manifest_max}
            for split in ("train", "eval")
        }
        manifest = {"prompt_tokens": {"max_prompt_tokens": 4096, "counter": "tokenizer T", **figures}}
        (data / "act" / "manifest.json").write_text(json.dumps(manifest))


@requires_openrlhf
def test_recipe_check_data_fails_on_prompts_over_the_recipe_limit(tmp_path):
    """PRESET=small: PROMPT_MAX_LEN 2048. Files are measured (estimate), or read from their manifest."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    env.update(MODE="local", ACT_SWAP_CONSISTENCY="0", ACT_REASONING="free", DATA_DIR=str(tmp_path / "data"))

    def errors() -> list[str]:
        report = check_recipes([RECIPES / "act.sh"], presets=["small"], environ=env, check_data=True)
        return [f.message for f in report.errors]

    write_act_data(tmp_path / "data", content_chars=3000)
    assert errors() == []
    write_act_data(tmp_path / "data", content_chars=9000)
    (message,) = {m for m in errors() if "prompt limit" in m and "train.jsonl" in m}
    assert "exceed the recipe's prompt limit 2048" in message and "PROMPT_MAX_LEN" in message
    assert "measured, estimate" in message and "--max-prompt-tokens 2048" in message
    write_act_data(tmp_path / "data", content_chars=300, manifest_max=3000)  # the manifest's figure decides
    assert any("prompts up to 3000 tokens (manifest.json, tokenizer T)" in m for m in errors())
    write_act_data(tmp_path / "data", content_chars=9000, manifest_max=2000)
    assert errors() == []


def test_the_estimate_imports_no_tokenizer_library():
    """Loading a tokenizer stays lazy: without one, budgeting never imports transformers."""
    code = (
        "import sys; from data_tools.build import BuildConfig;"
        "BuildConfig(inputs=('x',)).prompt_budget();"
        "assert not {'transformers', 'tokenizers'} & set(sys.modules), 'heavy import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parent.parent)
