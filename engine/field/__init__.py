"""Radiance field: grids, spaces, the field module and its volume renderer."""
