"""The shell recipes and `openrlhf-act recipe check`, which judges them with the installed OpenRLHF.

CI relies on the first test: every recipe, preset, mode and pipeline STAGES combination expands
with DRY_RUN=1 into commands that OpenRLHF's own argument parsers and asserts accept. The others
plant mistakes in copies of the recipes and check that each is reported where it was written.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from openrlhf_act import recipe_check
from openrlhf_act.commands import recipe as recipe_command
from openrlhf_act.recipe_check import (
    WRITTEN_FOR,
    Command,
    check_recipes,
    find_recipes,
    openrlhf_main,
    parse_dry_run,
    read_recipe,
    split_launch,
    version_findings,
)
from openrlhf_act.recipe_check.dry_run import assignment, option
from openrlhf_act.recipe_check.recipes import FLAG_GROUPS, SOURCED, expand
from tests.conftest import requires_openrlhf

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"
pytestmark = requires_openrlhf


def clean_env(**extra: str) -> dict[str, str]:
    """A shell environment with no recipe settings in it (a developer's exports must not pin variants)."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    env.update(extra)
    return env


def copy_recipes(tmp_path: Path) -> Path:
    folder = tmp_path / "recipes"
    shutil.copytree(RECIPES, folder)
    return folder


def plant(path: Path, anchor: str, new_line: str) -> int:
    """Insert ``new_line`` before the first line containing ``anchor`` (continuing the command that line
    belongs to); return its 1-based line number."""
    lines = path.read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if anchor in line)
    indent = re.match(r"\s*", lines[at])[0]
    continued = " \\" if at and lines[at - 1].rstrip().endswith("\\") else ""
    lines.insert(at, f"{indent}{new_line}{continued}\n")
    path.write_text("".join(lines))
    return at + 1


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line and "setting " not in line)


def errors_of(report) -> list[str]:
    return [str(f) for f in report.errors]


def test_every_recipe_preset_mode_and_pipeline_passes():
    report = check_recipes(environ=clean_env())
    assert report.errors == [] and report.warnings == [], "\n".join(map(str, report.findings))
    recipes = {p.name: read_recipe(p) for p in find_recipes()}
    assert {"act.sh", "il.sh", "rl.sh", "dpo.sh", "sft_choice.sh", "reflection.sh", "pipeline.sh", "mixed.sh"} <= set(
        recipes
    )
    pipeline = recipes["pipeline.sh"].axes
    assert set(pipeline["STAGES"]) == {
        "act,il", "act,rl", "act,il,rl", "il", "rl", "il,rl", "dpo,il,rl", "sft_choice,il,rl", "il,il", "il,rl,rl",
        "reflection,rl",
    }  # fmt: skip
    expected_commands = 0
    for recipe in recipes.values():
        combos = math.prod(len(values) for axis, values in recipe.axes.items() if axis != "STAGES")
        per_run = sum(len(s.split(",")) for s in recipe.axes["STAGES"]) if "STAGES" in recipe.axes else 1
        expected_commands += combos * per_run
    assert report.commands == expected_commands


def test_dry_run_prints_expanded_commands_and_runs_nothing(tmp_path):
    """Only openrlhf-act is reachable; ray, deepspeed and python stand-ins record any call."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "something-ran"
    for name in ("ray", "deepspeed", "python", "python3"):
        trap = bin_dir / name
        trap.write_text(f"#!/bin/sh\necho {name} >> {marker}\nexit 1\n")
        trap.chmod(0o755)
    cli = shutil.which("openrlhf-act") or str(Path(sys.executable).parent / "openrlhf-act")
    (bin_dir / "openrlhf-act").symlink_to(cli)
    env = clean_env(PATH=f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin", DRY_RUN="1", PRESET="small")
    env["DATA_DIR"] = str(tmp_path / "data")
    env["OUTPUT_DIR"] = str(tmp_path / "runs")
    out = subprocess.run(
        ["bash", str(RECIPES / "pipeline.sh")], env={**env, "STAGES": "act,il,rl"}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert not marker.exists(), marker.read_text()
    commands = [shlex.split(line) for line in out.stdout.splitlines() if line and not line.startswith("#")]
    assert all("$" not in word for argv in commands for word in argv), "unexpanded variables"
    assert commands[0][:4] == ["openrlhf-act", "recipe", "ray-head", "start"]  # a private head, stopped at the end
    launches = [launch for argv in commands if (launch := split_launch(argv)) is not None]
    assert [lc.module for lc in launches] == [
        "openrlhf.cli.train_ppo_ray",
        "openrlhf.cli.train_sft",
        "openrlhf.cli.train_ppo_ray",
    ]
    models, outputs = [], []
    for launch in launches:
        args = dict(zip(launch.args, launch.args[1:]))
        models.append(args.get("--actor.model_name_or_path") or args["--model.model_name_or_path"])
        outputs.append(args["--ckpt.output_dir"])
        assert args["--data.prompt_dataset" if "ppo" in launch.module else "--data.dataset"].startswith(env["DATA_DIR"])
    assert models[0] == "Qwen/Qwen3-0.6B"
    assert models[1:] == outputs[:-1], "each stage must start from the previous stage's checkpoint"
    assert outputs[0] == str(tmp_path / "runs" / "act-il-rl-small" / "1-act")
    assert launches[0].runtime_env == {"env_vars": {"OPENRLHF_ACT_REWARD_PRESET": "paper"}}
    assert not (tmp_path / "runs").exists()


def test_job_mode_ships_the_plugin_and_forwards_reward_settings(tmp_path):
    env = clean_env(
        DRY_RUN="1",
        MODE="job",
        JOB_SHIP="py_modules",
        RAY_ADDRESS="http://10.0.0.1:8265",
        OPENRLHF_ACT_REWARD_CONFIG='{"malformed": -1}',
        WANDB_API_KEY="secret-key",
        LOGGER="wandb",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    )
    out = subprocess.run(["bash", str(RECIPES / "act.sh")], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "secret-key" not in out.stdout
    (argv,) = [shlex.split(line) for line in out.stdout.splitlines() if line.startswith("ray job submit")]
    launch = split_launch(argv)
    assert argv[argv.index("--address") + 1] == "http://10.0.0.1:8265"
    assert launch.runtime_env["env_vars"] == {
        "OPENRLHF_ACT_REWARD_PRESET": "paper",
        "OPENRLHF_ACT_REWARD_CONFIG": '{"malformed": -1}',
        "WANDB_API_KEY": "<hidden>",
    }
    assert launch.runtime_env["py_modules"] == [str(ROOT / "openrlhf_act")]
    reward = launch.args[launch.args.index("--reward.remote_url") + 1]
    assert (Path(launch.runtime_env["working_dir"]) / reward).is_file()
    assert launch.args[launch.args.index("--logger.wandb.key") + 1] == "True"


@pytest.mark.parametrize(
    "script, file, anchor, planted, message",
    [
        ("act.sh", "act.sh", "--eval.dataset", '--actor.pretrain "$MODEL"', "unknown flag --actor.pretrain"),
        ("rl.sh", "rl.sh", "--actor.adam.lr", '--pretrain "$MODEL"', "unknown flag --pretrain"),
        ("il.sh", "common.sh", "if ((NNODES > 1))", "launcher+=(--num_gpu 1)", "unknown DeepSpeed launcher flag"),
        ("il.sh", "il.sh", "--eval.dataset", '--pretrain "$MODEL"', "did you mean --model.model_name_or_path"),
    ],
)
def test_a_planted_wrong_flag_is_reported_where_it_is_written(tmp_path, script, file, anchor, planted, message):
    folder = copy_recipes(tmp_path)
    line = plant(folder / file, anchor, planted)
    report = check_recipes([folder / script], presets=["small"], environ=clean_env(MODE="local"))
    located = [f for f in report.errors if f.where.endswith(f"{file}:{line}")]
    assert len(located) == 1 and message in located[0].message, errors_of(report)


def test_a_bad_value_is_reported_at_its_flag():
    report = check_recipes([RECIPES / "act.sh"], presets=["paper"], environ=clean_env(MODE="local", ESTIMATOR="nope"))
    (error,) = report.errors
    assert error.where.endswith(f"{FLAG_GROUPS}:{line_of(RECIPES / FLAG_GROUPS, '--algo.advantage.estimator')}")
    assert "invalid choice: 'nope'" in error.message


@pytest.mark.parametrize(
    "settings, words",
    [
        ({"GROUP_SIZE": "1"}, "group_norm requires n_samples_per_prompt > 1"),
        (
            {"GROUP_SIZE": "1", "ESTIMATOR": "reinforce"},
            "n_samples_per_prompt must be greater than 1 when using dynamic",
        ),
    ],
)
def test_a_failed_openrlhf_assert_is_reported(settings, words):
    report = check_recipes([RECIPES / "rl.sh"], presets=["small"], environ=clean_env(MODE="local", **settings))
    (error,) = report.errors
    assert words in error.message and "refuses these arguments" in error.message
    assert error.where.endswith(f"rl.sh:{line_of(RECIPES / 'rl.sh', 'openrlhf.cli.train_ppo_ray')}")


@pytest.mark.parametrize(
    "script, settings, words",
    [
        ("act.sh", {"VLLM_ENGINES": "3"}, "actor GPUs (8) = vLLM engines x tensor parallel size (3 x 1)"),
        ("il.sh", {"SFT_MICRO_BATCH": "3"}, "--train.batch_size 128 does not split into micro-batches of 3 on 8 GPU"),
        ("dpo.sh", {"DPO_EXTRA_ARGS": "--eval.split test"}, "whose only split is 'train', but --eval.split is 'test'"),
        ("mixed.sh", {"ACT_FRACTION": "1.5"}, "ACT_FRACTION must be between 0 and 1"),
        ("mixed.sh", {"USER_REWARD": "/nonexistent/reward.py"}, "OPENRLHF_ACT_ROUTE_DEFAULT=/nonexistent/reward.py"),
        ("act.sh", {"OPENRLHF_ACT_REWARD_PRESET": "lenient"}, "unknown reward preset 'lenient'"),
        ("act.sh", {"FORWARD_ENV": "NCCL_DEBUG"}, "OpenRLHF forwards NCCL_DEBUG itself"),
        ("act.sh", {"ACT_EXTRA_ARGS": "--ckpt.savepath x"}, "(comes from $ACT_EXTRA_ARGS)"),
    ],
)
def test_run_time_failures_are_caught_before_the_run(script, settings, words):
    report = check_recipes([RECIPES / script], presets=["paper"], environ=clean_env(MODE="local", **settings))
    assert any(words in f.message for f in report.errors), errors_of(report)


def test_data_flags_cannot_drift_from_the_data_kind(tmp_path):
    """The recipe writes the --data.* flags; the data kind it names (DATA_KIND) says what its rows hold."""
    folder = copy_recipes(tmp_path)
    act = folder / "act.sh"
    act.write_text(act.read_text().replace("--data.label_key label", "--data.label_key answer"))
    report = check_recipes([act], presets=["paper"], environ=clean_env(MODE="local"))
    (error,) = report.errors
    assert "act_judgment rows need `--data.label_key label`" in error.message
    assert error.where.endswith(f"act.sh:{line_of(act, '--data.label_key answer')}")
    il = folder / "il.sh"
    il.write_text(il.read_text().replace("DATA_KIND=$IL_DATA", "DATA_KIND=dpo"))
    report = check_recipes([il], presets=["paper"], environ=clean_env(MODE="local"))
    assert any(
        "dpo rows are read by openrlhf.cli.train_dpo, not openrlhf.cli.train_sft" in e for e in errors_of(report)
    )


@pytest.mark.parametrize("script", ["act.sh", "il.sh", "rl.sh", "dpo.sh", "sft_choice.sh", "online_env.sh", "mixed.sh"])
def test_every_flag_of_a_stage_is_written_in_its_recipe_or_the_shared_groups(script):
    """A stage's OpenRLHF command is read in its recipe and the flag groups it names: every flag it runs
    is written there."""
    recipe = read_recipe(RECIPES / script)
    text = (RECIPES / script).read_text() + (RECIPES / FLAG_GROUPS).read_text()
    settings = [{}, {"LOGGER": "wandb", "WANDB_GROUP": "g", "MAX_SAMPLES": "8", "ACT_SWAP_CONSISTENCY": "1"}]
    settings.append({"PRESET": "small", "IL_DATA": "sft_multiturn", "COLOCATE": "0"})
    for extra in settings:
        expansion = expand(recipe, {}, clean_env(**extra))
        assert expansion.returncode == 0, expansion.stderr
        (launch,) = [lc for c in parse_dry_run(expansion.stdout)[0] if (lc := split_launch(c.argv))]
        flags = {word for word in launch.args if word.startswith("--")}
        assert flags and not [flag for flag in flags if flag not in text], extra


def flags_written(path: Path) -> set[str]:
    """The dotted OpenRLHF flags a recipe file passes (comments and setting docs only mention them)."""
    lines = path.read_text().splitlines()
    code = [line for line in lines if not line.lstrip().startswith(("#", "setting "))]
    return {flag for line in code for flag in re.findall(r"--[a-z_]+\.[a-z_.]+", line.split(" # ")[0])}


def test_a_shared_flag_is_written_once():
    """The flags of the shared groups are written only there, never again in a stage recipe."""
    shared = flags_written(RECIPES / FLAG_GROUPS)
    assert "--algo.advantage.estimator" in shared and "--ckpt.max_num" in shared
    for script in sorted(RECIPES.glob("*.sh")):
        if script.name not in SOURCED:
            assert not flags_written(script) & shared, script.name


def test_the_prelude_writes_no_openrlhf_flag():
    """common.sh holds the mechanics only (settings, dry run, launchers): no dotted OpenRLHF flag in its code."""
    lines = (RECIPES / "common.sh").read_text().splitlines()
    code = [line for line in lines if not line.lstrip().startswith(("#", "setting "))]
    assert not [line for line in code if re.search(r"--[a-z_]+\.[a-z_]", line)]


def test_recipe_invocation_shows_the_command_the_recipe_runs(monkeypatch):
    """What `data build` prints: how to run act.sh on the build, and the OpenRLHF command it runs."""
    for name in ("PRESET", "MODE", "GROUP_SIZE", "ACT_SWAP_CONSISTENCY"):
        monkeypatch.delenv(name, raising=False)
    shown = recipe_check.recipe_invocation("act.sh", {"ACT_DATA": "/data/my act"})
    assert shown.startswith("ACT_DATA='/data/my act' bash ") and "recipes/act.sh" in shown.splitlines()[0]
    command = shown[shown.index("python -m openrlhf.cli.train_ppo_ray") :].replace("\\\n", " ")
    argv = shlex.split(command)
    assert argv[argv.index("--data.prompt_dataset") + 1] == "/data/my act/train.jsonl"
    assert "\n    --data.input_key prompt --data.label_key label --data.apply_chat_template \\\n" in shown


def test_check_data_compares_blended_files(tmp_path):
    data = tmp_path / "data"
    (data / "act").mkdir(parents=True)
    row = '{"prompt": [{"role": "user", "content": "x"}], "label": "{}", "datasource": "alfworld"}\n'
    (data / "act" / "train.jsonl").write_text(row)
    (data / "act" / "eval.jsonl").write_text(row)
    user = tmp_path / "user.jsonl"
    user.write_text('{"prompt": "a plain string", "label": "5"}\n')
    env = clean_env(MODE="local", DATA_DIR=str(data), USER_PROMPT_DATA=str(user))
    report = check_recipes([RECIPES / "mixed.sh"], presets=["small"], environ=env, check_data=True)
    assert any("cannot be blended" in f.message for f in report.errors), errors_of(report)
    user.write_text('{"prompt": [{"role": "user", "content": "2+3?"}], "label": "5"}\n')
    assert check_recipes([RECIPES / "mixed.sh"], presets=["small"], environ=env, check_data=True).errors == []
    env["DATA_DIR"] = str(tmp_path / "missing")
    report = check_recipes([RECIPES / "mixed.sh"], presets=["small"], environ=env, check_data=True)
    assert any("train.jsonl: no such file" in f.message for f in report.errors), errors_of(report)


def test_version_warning():
    assert version_findings(WRITTEN_FOR) == []
    (warning,) = version_findings("0.10.4")
    assert warning.level == "warning" and "0.10.4" in warning.message and WRITTEN_FOR in warning.message
    (error,) = version_findings(None)
    assert error.level == "error"
    report = check_recipes([RECIPES / "il.sh"], presets=["small"], environ=clean_env(), openrlhf_version="0.11.1")
    assert [f.message for f in report.warnings] == [warning.message.replace("0.10.4", "0.11.1")]
    assert report.errors == [] and report.commands == 2


def test_openrlhf_main_block_only_parses(tmp_path):
    """Checking imports no heavy module and starts nothing: train() and every non-stdlib import are stand-ins."""
    code = (
        "import sys; from openrlhf_act.recipe_check import check_recipes;"
        "env = {'PATH': sys.argv[1], 'MODE': 'local', 'ACT_SWAP_CONSISTENCY': '0', 'ACT_REASONING': 'free'};"
        "r = check_recipes(['recipes/act.sh', 'recipes/il.sh'], presets=['small'], environ=env);"
        "heavy = [m for m in ('ray', 'torch', 'deepspeed', 'vllm', 'transformers', 'openrlhf') if m in sys.modules];"
        "print(len(r.errors), r.commands, ','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, os.environ["PATH"]], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["0", "2"], out.stdout + out.stderr
    run = openrlhf_main("openrlhf.cli.train_ppo_ray").run(
        ["--actor.model_name_or_path", "m", "--reward.remote_url", "http://x", "--use_ms", "--vllm.num_engines", "1"]
    )
    assert run.args.actor.model_name_or_path == "m" and run.args.reward.remote_url == ["http://x"]
    assert run.skipped_imports == ["modelscope.utils.hf_util"]


def test_command_line(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    recipe_command.configure(parser)
    folder = copy_recipes(tmp_path)
    line = plant(folder / "rl.sh", "--eval.dataset", "--rollout.samples 4")
    args = parser.parse_args(["check", str(folder / "rl.sh"), "--preset", "small"])
    assert args.func(args) == 1
    out = capsys.readouterr().out
    assert f"rl.sh:{line}: error: unknown flag --rollout.samples" in out and "1 error(s)" in out
    args = parser.parse_args(["list", str(RECIPES)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "GROUP_SIZE=8\n" in out and "GPUS_PER_NODE=8 (small: 1)" in out and "STAGES=act,il,rl" in out
    args = parser.parse_args(["vars"])
    assert args.func(args) == 0
    shell = capsys.readouterr().out + 'printf "%s\\n" "${ACT_ENTRY_FILES[routing]}" "${ACT_ENTRY_FILES[consistency]}"'
    printed = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, check=True).stdout.splitlines()
    assert printed[0].endswith("routing_reward.py") and printed[1].endswith("consistency_executor.py")
    assert all(Path(path).is_file() for path in printed)


def test_recipe_check_through_the_installed_cli():
    cli = shutil.which("openrlhf-act") or str(Path(sys.executable).parent / "openrlhf-act")
    done = subprocess.run(
        [cli, "recipe", "check", "recipes/sft_choice.sh", "--preset", "small"],
        cwd=ROOT,
        env=clean_env(MODE="local"),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 variant(s), 1 OpenRLHF command(s)" in done.stdout


def test_recipes_are_valid_bash():
    for script in sorted(RECIPES.glob("*.sh")):
        done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert done.returncode == 0, f"{script.name}: {done.stderr}"
        if script.name not in SOURCED:
            assert os.access(script, os.X_OK), f"{script.name} is not executable"
            assert "set -euo pipefail" in script.read_text()
    shellcheck = shutil.which("shellcheck")
    if shellcheck:
        scripts = sorted(p.name for p in RECIPES.glob("*.sh"))
        done = subprocess.run([shellcheck, "-x", *scripts], cwd=RECIPES, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout


def test_command_parsing_finds_every_launcher():
    python = split_launch(["env", "A=1", "python3", "-m", "openrlhf.cli.train_ppo_ray", "--x", "1"])
    assert (python.module, python.args, python.launcher) == ("openrlhf.cli.train_ppo_ray", ["--x", "1"], "python")
    ds = split_launch(["deepspeed", "--num_gpus", "8", "--module", "openrlhf.cli.train_sft", "--a"])
    assert (ds.module, ds.args) == ("openrlhf.cli.train_sft", ["--a"])
    job = split_launch(
        ["ray", "job", "submit", "--address", "http://h:8265", "--runtime-env-json", '{"env_vars": {}}', "--",
         "deepspeed", "--module", "openrlhf.cli.train_dpo", "--b"]
    )  # fmt: skip
    assert (job.module, job.args, job.runtime_env) == ("openrlhf.cli.train_dpo", ["--b"], {"env_vars": {}})
    bad = split_launch(["deepspeed", "--num_gpu", "8", "--module", "openrlhf.cli.train_sft"])
    assert bad.problems == [("--num_gpu", "unknown DeepSpeed launcher flag --num_gpu")]
    assert split_launch(["ray", "start", "--head"]) is None
    assert isinstance(parse_dry_run("# recipe: a.sh\nx 'y z'\n")[0][0], Command)
    assert (assignment("A_1=x=y"), assignment("--a=1"), assignment("a b=1")) == (("A_1", "x=y"), None, None)
    assert (option("--a.b=1"), option("--a.b")) == (("--a.b", "1"), ("--a.b", None))
