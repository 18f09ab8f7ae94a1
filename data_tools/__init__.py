"""The data pipeline: trajectories in, OpenRLHF-ready JSONL out."""
