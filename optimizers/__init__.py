"""Metrics and DSPy optimisation runs for the general expert."""
