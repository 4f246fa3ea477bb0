"""The best IoU any segmentation can reach on a trained field: a voxel-label ceiling.

Segmentation gives each voxel of the segmentation domain (the occupied voxels it works
on) one object, and a 2D mask is that object's share of the rendered scene, filtered
with the view's photograph as the guide and thresholded, plus the pixels next to it that
GrabCut gives it by the photograph's colours (engine/segment/mask_edges.py; the results
in bench_results/label_ceiling_edge_filter_only.md predate that step).
So with a given field, no stroke rule, feature or parameter can beat the best hard
labelling of those voxels. This script finds a labelling that is as good as it gets:
per-voxel label logits, optimised (Adam, cross-entropy) so that every view's rendered
label distribution matches that view's ground-truth instance mask, using *all* views
with masks, the benchmark's target views included. Then each object's hard labels
(argmax) are rendered and scored on the benchmark's targets, exactly as `isrf eval` does.
(The fit matches the unfiltered shares to the masks, so with the 2D steps on, the result
is a close estimate of the ceiling rather than a strict bound.)

The gap between this and `isrf eval` is what better strokes, features or growth rules
could still win; the gap between this and 100 is the field's own (its soft surfaces).

    .venv/bin/python scripts/bench_label_ceiling.py            # the main job's checkpoint

It needs a scene whose transforms.json frames carry instance masks (`mask_path`), and
targets that name the object's id (`value`); the default scene and its benchmark do. Results: bench_results/label_ceiling.json, .md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.errors import IsrfError  # noqa: E402
from engine.field.renderer import render_segment_image  # noqa: E402
from engine.scene import Scene  # noqa: E402
from engine.segment.auto_scribbles import instance_masks  # noqa: E402
from engine.segment.benchmark import load_benchmark, read_png, scores  # noqa: E402
from engine.segment.mask_edges import visible_mask  # noqa: E402
from engine.segment.refine import domain_samples, heavy_samples  # noqa: E402

STEPS = 150         # Adam steps on the label logits: the loss is flat after ~50
LEARNING_RATE = 0.5


def best_labels(scene: Scene, masks: list[np.ndarray], classes: int,
                progress: bool = True) -> torch.Tensor:
    """Domain rows [M] -> instance id (0: background) fitted to the masks [H, W] of
    every view (masks[i] is view i's)."""
    session = scene.segmentation
    domain = session.domain
    rows, weights, pixels, truth = [], [], [], []
    offset = 0
    with torch.no_grad():
        for view, mask in enumerate(tqdm(masks, desc="rays", disable=not progress, unit="view")):
            r, w, p = heavy_samples(domain_samples(scene.field, session.space, session.cameras,
                                                   view, domain))
            rows.append(r), weights.append(w), pixels.append(p + offset)
            truth.append(torch.from_numpy(mask.astype(np.int64).reshape(-1)).to(w.device))
            offset += mask.size
    rows, weights, pixels, truth = map(torch.cat, (rows, weights, pixels, truth))
    logits = torch.zeros(domain.size, classes, device=weights.device, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=LEARNING_RATE)
    for _ in tqdm(range(STEPS), desc="labels", disable=not progress, unit="step"):
        shares = torch.softmax(logits, 1)[rows] * weights[:, None]           # [K, C]
        rendered = torch.zeros(offset, classes, device=weights.device).index_add(0, pixels, shares)
        background = (1 - rendered.sum(1)).clamp_min(0)     # light that passes: no object
        right = rendered.gather(1, truth[:, None])[:, 0] + background * (truth == 0)   # [P]
        loss = -right.clamp_min(1e-6).log().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return logits.detach().argmax(1)


def ceiling(scene: Scene, spec_path: Path, progress: bool = True) -> dict:
    spec = load_benchmark(spec_path)
    scene_dir = (spec_path.parent / spec.scene).resolve()
    _, masks = instance_masks(scene_dir)
    size = (scene.data.width, scene.data.height)
    if len(masks) != len(scene.data.names) or any(m.shape != (size[1], size[0]) for m in masks):
        raise SystemExit(f"{scene_dir}: needs one {size[0]}x{size[1]} instance mask per view")
    labels = best_labels(scene, masks, int(max(m.max() for m in masks)) + 1, progress)
    session = scene.segmentation
    params = session.defaults      # 2D masks as `isrf eval` makes them (Scene.mask_image)
    objects = {}
    for item in spec.objects:
        if any(target.value is None for target in item.targets):
            raise SystemExit(f"{item.name}: targets need the object's instance id (`value`)")
        rows = []
        for target in item.targets:
            keep = session.domain.to_grid(labels == target.value)
            truth = read_png(scene_dir / target.mask, size, "target mask") == target.value
            visible = render_segment_image(scene.field, session.space, session.cameras,
                                           target.view, keep)["visible"]
            predicted = visible_mask(visible, scene.data.image_float(target.view), params)
            rows.append(scores(predicted, truth))
        objects[item.name] = round(100 * float(np.mean([r["iou"] for r in rows])), 1)
    return {"objects": objects, "mean_iou": round(float(np.mean(list(objects.values()))), 1)}


def markdown(result: dict, achieved: dict | None) -> str:
    lines = ["| object | ceiling IoU | isrf eval IoU |", "|---|---|---|"]
    for name, value in result["objects"].items():
        got = achieved["objects"].get(name, ["-"])[0] if achieved else "-"
        lines.append(f"| {name} | {value} | {got} |")
    got = achieved["mean_iou"] if achieved else "-"
    lines.append(f"| mean | {result['mean_iou']} | {got} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=REPO / "runs" / "default" / "checkpoint.pt")
    parser.add_argument("--benchmark", type=Path, default=REPO / "benchmarks" / "default.json")
    parser.add_argument("--out", type=Path, default=REPO / "bench_results")
    args = parser.parse_args()
    if not args.checkpoint.is_file():
        raise SystemExit(f"{args.checkpoint}: no checkpoint (run ./scripts/demo.sh first)")
    scene = Scene.from_checkpoint(args.checkpoint, "cpu")
    if scene.features is None:
        raise SystemExit(f"{args.checkpoint}: no distilled features (the domain needs them)")
    try:
        measured = ceiling(scene, args.benchmark)
    except IsrfError as error:
        raise SystemExit(str(error)) from None
    result = {"checkpoint": str(args.checkpoint), "benchmark": str(args.benchmark),
              "grid": "x".join(map(str, scene.field.resolution)), **measured}
    achieved_file = args.out / "segment_cpu.json"
    achieved = None
    if achieved_file.is_file():
        achieved = next((r for r in json.loads(achieved_file.read_text())
                         if r["case"] == "default_scene"), None)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "label_ceiling.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "label_ceiling.md").write_text(markdown(result, achieved))
    print(markdown(result, achieved))


if __name__ == "__main__":
    main()
