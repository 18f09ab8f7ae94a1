"""OpenRLHF entry file for the `act_judgment` reward.

Use: `--reward.remote_url $(openrlhf-act reward path act_judgment)`. OpenRLHF executes this file standalone
inside each vLLM rollout actor, so it holds absolute imports only.
"""

from openrlhf_act.integrations.openrlhf.entry import make_reward_func

reward_func = make_reward_func("act_judgment")
