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
def scripted_model(tmp_path_factory) -> str:
    """A tiny model that answers with the replies of ``tests/completions.py`` (uniformly when sampled)."""
    from openrlhf_act.devtools.scripted_model import build_scripted_model
    from tests.completions import CUT_OFF_REPLIES, REPLIES

    return str(build_scripted_model(tmp_path_factory.mktemp("scripted-model"), REPLIES, cut_off=CUT_OFF_REPLIES))


@pytest.fixture(scope="session")
def local_ray():
    """One in-process Ray head for the whole session (loopback only), shut down at the end."""
    import ray

    from openrlhf_act.devtools.openrlhf_cpu import start_local_ray

    start_local_ray(num_cpus=2)
    yield ray
    ray.shutdown()


TRAINING_RUNS = "tests/test_training_runs.py"


def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile`` (pytest.ini), with the training runs' file handed out first: it is the longest
    (about 15 minutes) and runs on one worker while the other takes the rest of the suite. xdist itself
    hands out files by their number of tests, which would leave the training runs alone at the end."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class TrainingRunsFirst(LoadFileScheduling):
        def _assign_work_unit(self, node):
            if TRAINING_RUNS in self.workqueue:
                self.workqueue.move_to_end(TRAINING_RUNS, last=False)
            super()._assign_work_unit(node)

    return TrainingRunsFirst(config, log)
