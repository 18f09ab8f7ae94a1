"""Files OpenRLHF loads by absolute path (reward entry files, agent executors) and their helpers."""
