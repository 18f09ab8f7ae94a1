"""Evaluation: episodes in live environments, next-action and judgment accuracy offline, reports.

Cheap to import; environments, samplers and plotting are loaded by the module that uses them.
"""
