"""Segmentation quality on the default scene: a small render of it (bpy), trained for a
few minutes, segmented from the automatic scribbles of its ground truth, scored on its
held-out views."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from engine.config import load_config
from engine.scene import Scene
from engine.segment.auto_scribbles import benchmark_from_masks
from engine.segment.benchmark import Benchmark, run_benchmark
from locations import REPO

MEAN_IOU_THRESHOLD = 0.72
"""Mean 3D IoU (masks rendered from the voxel selection) over the 7 objects at 128 px (40
views, a 96^3 grid, 900 colour and 400 feature steps); measured 0.76. Small objects are
~15 px wide here, so a one-pixel rim costs ~20% IoU. The full main job reaches 0.897."""
MEAN_IOU_2D_THRESHOLD = 0.80
"""The same with the photo assists (edges snapped to the photographs, pixels added by
their colours); measured 0.86 (the full main job: 0.955)."""


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="needs bpy to render the default scene")
def test_default_scene_objects_are_segmented_from_scribbles(tmp_path):
    scene_path = tmp_path / "default"
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "blender")}
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_default_scene.py"), "--out",
                    str(scene_path), "--views", "40", "--size", "128", "--samples", "8"],
                   env=env, check=True, capture_output=True)
    config = load_config(REPO / "configs" / "default.toml", [
        f"data.path={str(scene_path)!r}", f"train.out_dir={str(tmp_path / 'run')!r}",
        "field.num_voxels=884736", "train.steps=900", "train.eval_every=0",
        "field.upscale_steps=[200,400,600]", "features.input_size=288", "distill.steps=400",
        f"features.cache_dir={str(tmp_path / 'cache')!r}"])
    scene = Scene(config, "cpu")
    scene.train(progress=False, final_eval=False)
    scene.distill(progress=False, final_eval=False)
    spec = Benchmark.model_validate(benchmark_from_masks(scene_path, tmp_path))
    assert len(spec.objects) == 7
    results = run_benchmark(scene, spec, tmp_path / spec.scene, progress=False)
    print(json.dumps({o["name"]: [round(o["iou"], 3), round(o["iou_2d"], 3)]
                      for o in results["objects"]}))
    assert results["mean_iou"] > MEAN_IOU_THRESHOLD, results["mean_iou"]
    assert results["mean_iou_2d"] > MEAN_IOU_2D_THRESHOLD, results["mean_iou_2d"]
    assert results["mean_accuracy"] > 0.97
