"""Configuration a model project carries: mlpack.toml (spec.py: raw TOML -> validated -> resolved ModelSpec)
and mlpack.lock.json (lock.py: which image digest each model deploys).

Enters: files on disk. Leaves: frozen dataclasses. Imports nothing of the pipeline stages.
"""
