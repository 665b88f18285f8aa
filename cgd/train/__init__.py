"""Trainer for CGD and its baselines: config → runtime → data → model → loop → eval → checkpoint."""
