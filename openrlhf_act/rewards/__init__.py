"""Pure rewards: ``(response, label, config) -> RewardResult``; no heavy imports."""
