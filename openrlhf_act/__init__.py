"""openrlhf-act: Agentic Critical Training (arXiv 2603.08706) as a plugin for OpenRLHF.

Importing this package is cheap on purpose: no torch, vLLM, Ray, OpenRLHF or Java bridges.
"""

__version__ = "0.1.0"
