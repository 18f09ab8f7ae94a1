"""The code base stays ruff-clean (lint and format), with the configuration in ruff.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import have

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not have("ruff"), reason="ruff is not installed (pip install -e .[test])")
@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff(command):
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "openrlhf_act", "data_tools", "tests", "bench"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_openrlhf_act_stays_light():
    """The core and the CLI parser must not drag in torch, vLLM, Ray, OpenRLHF or Java bridges."""
    code = (
        "import sys, openrlhf_act, openrlhf_act.rewards.catalog, openrlhf_act.rewards.routing, data_tools.build;"
        "from openrlhf_act.cli import build_parser; build_parser();"
        "heavy = ('torch', 'vllm', 'ray', 'openrlhf', 'py4j', 'transformers', 'scienceworld');"
        "heavy = [m for m in heavy if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported: {out.stdout.strip()}"
