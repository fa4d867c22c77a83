"""Robustness perturbations (DeeperForensics-1.0)."""
