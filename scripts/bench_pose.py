"""Posing benchmark: `isrf pose` on captures whose true cameras are known, scored by
engine/data/pose_accuracy.py (rotation error in degrees, position error as a fraction of
the capture's size, after the best similarity alignment) and timed.

    .venv/bin/python scripts/bench_pose.py                      # every case
    .venv/bin/python scripts/bench_pose.py --case room_72_400

Cases:
- orbit_60_1000: 60 photos of 1000 px of the textured analytic scene (tests/synthetic.py)
  from an orbit around it; rendered once into runs/bench_pose/ and reused.
- room_72_400: the room scene's 72 Blender renders of 400 px (scenes/room; made by
  `scripts/make_default_scene.py --scene room --out scenes/room`), skipped if missing.
Targets (issue 31): 60 photos of 1000 px posed in <= 10 min on 2 CPU cores; cameras
within 1 degree and 1%. Rows go to bench_results/pose_cpu.json and .md under the case's
name (other cases' rows are kept).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from bench_common import save_rows  # noqa: E402
from synthetic import make_textured_scene  # noqa: E402

from engine.data.pose import pose_photos  # noqa: E402
from engine.data.pose_accuracy import camera_errors  # noqa: E402

WORK = REPO / "runs" / "bench_pose"
CASES = ["orbit_60_1000", "room_72_400"]


def _capture(case: str) -> Path | None:
    """The folder with the case's photos (images/) and true cameras (transforms.json)."""
    if case == "orbit_60_1000":
        folder = WORK / case / "capture"
        if not (folder / "transforms.json").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            make_textured_scene(folder, views=60, size=1000)
        return folder
    folder = REPO / "scenes" / "room"
    return folder if (folder / "transforms.json").is_file() else None


def _poses(scene: Path) -> dict[str, np.ndarray]:
    meta = json.loads((scene / "transforms.json").read_text())
    return {Path(f["file_path"]).name: np.asarray(f["transform_matrix"]) for f in meta["frames"]}


def _true_focal(meta: dict) -> float:
    return meta.get("fl_x") or 0.5 * meta["w"] / math.tan(0.5 * meta["camera_angle_x"])


def run_case(case: str) -> dict | None:
    capture = _capture(case)
    if capture is None:
        print(f"{case}: skipped: scenes/room is missing", file=sys.stderr)
        return None
    out = WORK / case / "posed"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    report = pose_photos(capture / "images", out)
    seconds = time.perf_counter() - start
    estimated, true = _poses(out), _poses(capture)
    names = sorted(estimated)
    rotation, position = camera_errors(np.stack([estimated[n] for n in names]),
                                       np.stack([true[n] for n in names]))
    true_meta = json.loads((capture / "transforms.json").read_text())
    posed_meta = json.loads((out / "transforms.json").read_text())
    focal_error = abs(posed_meta["fl_x"] / _true_focal(true_meta) - 1)
    met = (seconds <= 600 and report.registered == report.photos
           and rotation.max() <= 1.0 and position.max() <= 0.01)
    return {"case": case, "photos": report.photos, "size": int(true_meta["w"]),
            "registered": report.registered, "seconds": round(seconds, 1),
            "stage_seconds": report.seconds, "rotation_deg_max": round(float(rotation.max()), 3),
            "rotation_deg_mean": round(float(rotation.mean()), 3),
            "position_pct_max": round(100 * float(position.max()), 2),
            "position_pct_mean": round(100 * float(position.mean()), 2),
            "focal_error_pct": round(100 * focal_error, 2),
            "reprojection_px": round(report.reprojection_error_px, 2),
            "target": "met" if met else "missed"}


def markdown(rows: list[dict]) -> str:
    lines = ["| case | photos | registered | time | rotation max / mean | position max / mean "
             "| focal error | reprojection | target (<= 10 min, 1 deg, 1%) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        stages = ", ".join(f"{k} {v:.0f} s" for k, v in r["stage_seconds"].items())
        lines.append(f"| {r['case']} | {r['photos']} x {r['size']} px | {r['registered']} | "
                     f"{r['seconds']:.0f} s ({stages}) | {r['rotation_deg_max']:.2f} / "
                     f"{r['rotation_deg_mean']:.2f} deg | {r['position_pct_max']:.2f} / "
                     f"{r['position_pct_mean']:.2f} % | {r['focal_error_pct']:.2f} % | "
                     f"{r['reprojection_px']:.2f} px | {r['target']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=CASES, action="append")
    args = parser.parse_args()
    rows = [row for case in (args.case or CASES) if (row := run_case(case)) is not None]
    rows = save_rows(REPO / "bench_results", "pose_cpu", rows, CASES, markdown)
    print(markdown(rows))


if __name__ == "__main__":
    main()
