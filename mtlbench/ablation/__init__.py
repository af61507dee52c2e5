"""Ablation sweeps: specs, plans, execution and tables (``mtlbench ablate``)."""
