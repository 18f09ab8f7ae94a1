"""The layer contract (``.importlinter``, the README's Design section) holds, covers every module and
would catch a planted wrong-way import: checked with import-linter on this tree and on copies with one
bad line. No import cycle exists either (grimp, import-linter's graph library)."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

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


PACKAGES = ("openrlhf_act", "data_tools")


def layer_modules() -> list[str]:
    """The modules (and packages) the layers contract names, top layer first."""
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    lines = config["importlinter:contract:layers"]["layers"].split("\n")
    return [name.strip() for line in lines for name in line.split(":") if name.strip()]


def test_the_layer_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_every_module_sits_in_a_layer():
    """A new module outside every layer would escape the contract silently."""
    named = layer_modules()
    graph = grimp.build_graph(*PACKAGES)
    outside = [
        module
        for module in sorted(graph.modules)
        if module not in PACKAGES and not any(module == n or module.startswith(n + ".") for n in named)
    ]
    assert not outside, f"put these modules in a layer of .importlinter: {outside}"


def test_no_import_cycles():
    graph = grimp.build_graph(*PACKAGES)
    cycles = {
        tuple(sorted((module, imported)))
        for module in graph.modules
        for imported in graph.find_modules_directly_imported_by(module)
        if graph.chain_exists(importer=imported, imported=module)
    }
    assert not cycles, f"import cycles: {sorted(cycles)}"


@pytest.mark.parametrize(
    ("module_file", "planted", "reported"),
    [
        (
            "openrlhf_act/eval/summary.py",
            "from data_tools.build import summary as _planted",
            "openrlhf_act.eval.summary -> data_tools.build",
        ),
        (
            "openrlhf_act/schema.py",
            "from openrlhf_act.prompts import agent_messages as _planted",
            "openrlhf_act.schema -> openrlhf_act.prompts",
        ),
        (
            "openrlhf_act/rewards/judgment.py",
            "from openrlhf_act.eval.summary import fmt as _planted",
            "openrlhf_act.rewards.judgment -> openrlhf_act.eval.summary",
        ),
    ],
)
def test_a_planted_wrong_way_import_breaks_it(tmp_path, module_file, planted, reported):
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    with (tmp_path / module_file).open("a") as handle:
        handle.write(f"\n{planted}  # noqa: E402\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert reported in result.stdout
