"""The online environment executor's parts, as regular modules of the package.

``openrlhf_act/integrations/openrlhf/env_executor.py`` is the file OpenRLHF loads by path; it holds only
the OpenRLHF classes and imports these: the row label (:mod:`openrlhf_act.envs.online_label`), the
per-process settings (:mod:`.runtime`), the simulators (:mod:`.simulator_pool`), the chat template cut
into turns (:mod:`.chat_turns`), the episode (:mod:`.live_episode`) and the engine wrapper that notes
why each turn ended (:mod:`.engine_tap`).
"""
