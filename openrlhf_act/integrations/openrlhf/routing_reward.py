"""OpenRLHF entry file for the `routing` reward.

Use: `--reward.remote_url $(openrlhf-act reward path routing)`. OpenRLHF executes this file standalone
inside each vLLM rollout actor, so it holds absolute imports only.
"""

from openrlhf_act.integrations.openrlhf.entry import make_reward_func

reward_func = make_reward_func("routing")
