"""The runnable examples in the docstrings of the reward functions and the grammars they rest on
(as TRL documents its rewards): each is run, so the documentation cannot drift from the code."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = (
    "openrlhf_act.rewards.judgment",
    "openrlhf_act.rewards.next_action",
    "openrlhf_act.verdict",
    "openrlhf_act.actions",
    "openrlhf_act.redaction",
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no docstring example"
    assert result.failed == 0
