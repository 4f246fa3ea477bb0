"""Optimisation of a radiance field on posed images, with checkpoints."""
