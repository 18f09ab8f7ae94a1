"""Build DeepSpeed's CPU ops ahead of the first CPU training run.

On a CPU machine DeepSpeed compiles two C++ ops the first time a trainer starts: its Adam (``fused_adam``,
used for OpenRLHF's AdamW) and its shared-memory collectives (``deepspeed_shm_comm``), about four minutes
on two cores, one after the other. CI builds them in the background while the quick tests run, into the
``TORCH_EXTENSIONS_DIR`` its training runs then share (torch's extension loader locks the build folder, so a
trainer that starts early waits for the build instead of repeating it).

    DS_ACCELERATOR=cpu TORCH_EXTENSIONS_DIR=DIR python -m openrlhf_act.devtools.deepspeed_ops
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

OP_BUILDERS = ("FusedAdamBuilder", "ShareMemCommBuilder")


def build(name: str) -> float:
    """Compile (or find already compiled) one op; return the seconds it took."""
    from deepspeed.accelerator import get_accelerator

    start = time.monotonic()
    builder = get_accelerator().create_op_builder(name)
    if builder is None:
        raise RuntimeError(f"DeepSpeed's {get_accelerator().device_name()} accelerator has no {name}")
    builder.load(verbose=False)
    return time.monotonic() - start


def main() -> int:
    if os.environ.get("DS_ACCELERATOR") != "cpu":
        print("deepspeed_ops: set DS_ACCELERATOR=cpu (this prebuilds the CPU ops)", file=sys.stderr)
        return 2
    # The two builds are independent compilations: run them side by side.
    with ThreadPoolExecutor(len(OP_BUILDERS)) as pool:
        for name, seconds in zip(OP_BUILDERS, pool.map(build, OP_BUILDERS)):
            print(f"deepspeed_ops: {name} ready in {seconds:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
