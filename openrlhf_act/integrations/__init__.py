"""Adapters to other systems; each module imports its heavy dependency lazily."""
