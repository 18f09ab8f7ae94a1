"""CPU stand-in for the few ``flash_attn`` names ``openrlhf.models`` imports at module level.

flash-attn cannot be built or imported without CUDA. This package exists only so OpenRLHF's real
modules import on CPU machines (tests, the CPU demo); put its parent directory on ``sys.path`` with
:func:`openrlhf_act.devtools.openrlhf_cpu.enable_flash_attn_stub`. Never install it on a GPU machine.
"""

__version__ = "0.0.0+cpu-stub"
