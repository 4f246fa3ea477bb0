"""Segmentation from strokes: voxel domain, region growing, sessions, benchmarks."""
