"""The layer contract (``.importlinter``, the README's Design section) holds, and it would catch a
planted wrong-way import: checked with import-linter on this tree and on a copy with one bad line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = [
    sys.executable,
    "-c",
    "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())",
]


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """import-linter over ``root``'s packages (it imports nothing: it reads the source)."""
    return subprocess.run(
        [*LINT_IMPORTS, "--no-cache"], cwd=root, capture_output=True, text=True, env={"PYTHONPATH": str(root)}
    )


def test_the_layer_contract_holds():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_a_planted_wrong_way_import_breaks_it(tmp_path):
    for name in ("openrlhf_act", "data_tools"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    with (tmp_path / "openrlhf_act" / "eval" / "summary.py").open("a") as handle:
        handle.write("\nfrom data_tools.build import summary as _planted  # noqa: E402\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "openrlhf_act.eval.summary -> data_tools.build" in result.stdout
