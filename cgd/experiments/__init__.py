"""Experiments: several training modes compared on one snapshot (the paper's experiment)."""
