"""Another package adds a reward through the ``openrlhf_act.rewards`` entry-point group."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PLUGIN = '''
from openrlhf_act.rewards.catalog import RewardSpec
from openrlhf_act.rewards.base import RewardResult


def length_reward(response, label, config, *, truncated=False):
    """Toy plugin reward: 1.0 for responses shorter than the number in the label."""
    short = float(len(response) < int(label))
    return RewardResult(short, short, {"chars": float(len(response)), "truncated": float(truncated)})


SPEC = RewardSpec.from_pure("length_reward", length_reward, ("chars", "truncated"), "short answers win")
SHADOW = RewardSpec.from_pure("act_judgment", length_reward, ("chars", "truncated"), "must not replace ours")
'''

CHECK = """
import importlib.util, json, subprocess, sys
from openrlhf_act.cli import main
from openrlhf_act.rewards.catalog import get_reward, rewards

assert "length_reward" in rewards()
assert get_reward("act_judgment").description.startswith("ACT judgment")  # a plugin cannot shadow a built-in
assert main(["reward", "path", "length_reward", "--out-dir", sys.argv[1]]) == 0
path = sys.argv[1] + "/length_reward_reward.py"
spec = importlib.util.spec_from_file_location("reward_func", path)  # exactly how OpenRLHF loads it
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
prompt = "<|im_start|>user\\nhi<|im_end|>\\n<|im_start|>assistant\\n"
print(json.dumps(module.reward_func([prompt + "ok<|im_end|>"], [prompt], ["20"])))
"""


def test_entry_point_reward_is_listed_and_gets_an_entry_file(tmp_path):
    site = tmp_path / "site"
    (site / "myplug-0.1.dist-info").mkdir(parents=True)
    (site / "myplug.py").write_text(PLUGIN)
    (site / "myplug-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: myplug\nVersion: 0.1\n")
    (site / "myplug-0.1.dist-info" / "entry_points.txt").write_text(
        textwrap.dedent(
            """
            [openrlhf_act.rewards]
            length_reward = myplug:SPEC
            act_judgment = myplug:SHADOW
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    out = subprocess.run(
        [sys.executable, "-c", CHECK, str(tmp_path / "entry")], env=env, capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    result = out.stdout.strip().splitlines()[-1]
    assert result == '{"rewards": 1.0, "scores": 1.0, "extra_logs": {"chars": 12.0, "truncated": 0.0}}'
    listing = subprocess.run(
        [sys.executable, "-m", "openrlhf_act", "reward", "list"], env=env, capture_output=True, text=True, cwd=ROOT
    )
    assert "length_reward" in listing.stdout and "short answers win" in listing.stdout
