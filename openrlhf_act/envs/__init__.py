"""Text environments behind one small interface (:class:`openrlhf_act.envs.base.TextEnv`).

Each adapter is the only module that imports its environment package, lazily.
"""
