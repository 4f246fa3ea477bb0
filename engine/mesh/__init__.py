"""Meshes of segments: marching cubes, colours, world placement, export."""
