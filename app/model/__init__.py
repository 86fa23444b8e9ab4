"""Describing the model the workers serve."""
