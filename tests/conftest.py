"""Shared fixtures. Tests run offline: models are built at test time, nothing is downloaded."""

from __future__ import annotations

import os
import shutil

import pytest

pytest_plugins = ["tests.serve_support"]  # the start_server fixture

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")


def have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


requires_openrlhf = pytest.mark.skipif(
    not have("openrlhf"), reason="openrlhf is not installed (pip install -e .[test] + the CPU stack)"
)
requires_vllm = pytest.mark.skipif(not have("vllm"), reason="vllm is not installed")
requires_java = pytest.mark.skipif(shutil.which("java") is None, reason="ScienceWorld needs Java 17")
requires_scienceworld = pytest.mark.skipif(
    not have("scienceworld") or shutil.which("java") is None, reason="scienceworld and Java 17 are needed"
)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A 2-layer Qwen2 + byte-level BPE tokenizer with a ChatML template, built offline."""
    from openrlhf_act.devtools.tiny_model import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-model")))


@pytest.fixture(scope="session")
def local_ray():
    """One in-process Ray head for the whole session (loopback only), shut down at the end."""
    import ray

    from openrlhf_act.devtools.openrlhf_cpu import start_local_ray

    start_local_ray(num_cpus=2)
    yield ray
    ray.shutdown()


TRAINING_RUNS = "test_training_runs.py"


def pytest_collection_modifyitems(session, config, items):
    """The training runs first: with two xdist workers (pytest.ini), their file then runs on one worker
    from the start while the other takes the rest of the suite, instead of alone at the end."""
    items.sort(key=lambda item: item.path.name != TRAINING_RUNS)  # stable: the rest keeps its order
