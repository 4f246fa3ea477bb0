"""`isrf` command line: a thin layer over `engine.scene.Scene`.

Expected failures (bad files, configs, arguments) end with one line on stderr and exit
code 2; a cancel (Ctrl+C) saves what it can and exits with 130.
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import subprocess
import time
import sys
import warnings
from pathlib import Path

from engine.atomic import write_json
from engine.config import apply_overrides, config_from_dict, config_to_dict, load_config
from engine.errors import Cancelled, IsrfError, where
from engine.resources import default_benchmark, default_config, default_root, default_scene_dir

TRAIN_LONG_SIDE = 1000
"""Posed photos are trained at about this size (`isrf pose` prints the downscale)."""


def _add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None,
                        help="compute device (default: cuda when available, else cpu)")


def _add_set(parser: argparse.ArgumentParser, which: str = "a config value") -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override {which}, e.g. --set train.steps=500 (repeatable)")


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML config (default: built-in defaults)")
    _add_set(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="isrf", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a radiance field on a scene, then distil "
                                              "its semantic features (distill.steps > 0)")
    _add_config(train)
    train.add_argument("--resume", action="store_true",
                       help="continue from <train.out_dir>/checkpoint.pt")
    _add_device(train)

    features = commands.add_parser("features", help="extract (or check the cache of) a scene's "
                                                    "2D semantic features")
    _add_config(features)
    features.add_argument("--weights", type=Path, help="backbone weights file "
                                                       "(overrides features.weights)")
    features.add_argument("--no-cache", action="store_true",
                          help="extract again even when the cache is current (and do not write it)")
    _add_device(features)

    render = commands.add_parser("render", help="render dataset views of a trained field")
    render.add_argument("--checkpoint", type=Path, required=True)
    render.add_argument("--views", choices=["test", "train", "all"], default="test")
    render.add_argument("--out", type=Path, required=True, help="folder for PNGs + metrics.json")
    render.add_argument("--features", action="store_true",
                        help="also render the feature field beside the 2D features, and score "
                             "their cosine similarity")
    _add_device(render)

    segment = commands.add_parser("segment", help="segment objects from strokes: 3D masks, "
                                                  "per-view masks and renders, meshes")
    segment.add_argument("--checkpoint", type=Path, required=True)
    segment.add_argument("--strokes", type=Path, required=True,
                         help='JSON: {"segments": [{"name": ..., "strokes": [...]}]} '
                              "(docs/segmentation.md)")
    segment.add_argument("--out", type=Path, required=True,
                         help="folder for session.npz and, per segment, masks/, renders/, mesh")
    segment.add_argument("--views", choices=["test", "train", "all"], default="all",
                         help="dataset views to write masks and renders for")
    segment.add_argument("--mesh", choices=["ply", "obj", "glb", "none"], default="ply",
                         help="mesh file format (none: no mesh)")
    segment.add_argument("--photo-assist", action="store_true",
                         help="snap the masks' edges to each view's photograph and add pixels "
                              "by its colours (2D only: the voxels, renders and mesh stay)")
    segment.add_argument("--refine", action="store_true",
                         help="after its strokes, refine every segment with the photographs of "
                              "every third training view (a segment's own `refine` wins)")
    _add_set(segment, "segment.* or mesh.* settings")
    _add_device(segment)

    evaluate = commands.add_parser("eval", help="score segmentation against ground-truth masks "
                                                "(docs/benchmark.md)")
    evaluate.add_argument("--benchmark", type=Path, required=True, help="benchmark spec (JSON)")
    evaluate.add_argument("--checkpoint", type=Path,
                          help="trained scene (default: the spec's checkpoint)")
    evaluate.add_argument("--out", type=Path, help="write the results JSON here")
    evaluate.add_argument("--refine", action="store_true",
                          help="refine every object after its strokes (as isrf segment --refine)")
    _add_set(evaluate, "segment.* settings")
    _add_device(evaluate)

    serve = commands.add_parser("serve", help="run the engine as a loopback HTTP service "
                                              "(the Blender add-on's engine; docs/serve.md)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    serve.add_argument("--port", type=int, default=0, help="port (0: a free one, printed)")
    serve.add_argument("--token-file", type=Path, help="where the token goes (default: state dir)")
    serve.add_argument("--state-dir", type=Path, default=Path("~/.cache/isrf/serve"),
                       help="runs, sessions and the token file (default ~/.cache/isrf/serve)")
    serve.add_argument("--allow-remote", action="store_true",
                       help="allow a non-loopback --host (prints a warning)")
    serve.add_argument("--parent-pid", type=int, help="stop when this process exits")
    _add_device(serve)

    pose = commands.add_parser("pose", help="camera poses for a folder of photos or a video "
                                            "(structure from motion, pycolmap): writes a scene")
    pose.add_argument("photos", type=Path, nargs="?", help="folder of photos (or use --video)")
    pose.add_argument("--video", type=Path, help="a video to take frames from instead")
    pose.add_argument("--fps", type=float, default=2.0,
                      help="--video: frames taken a second (default 2)")
    pose.add_argument("--out", type=Path, help="scene folder to write (default: "
                                               "scenes/<name of the photos or video>)")
    pose.add_argument("--max-size", type=int, default=1600,
                      help="longest side the features are found at (default 1600)")
    pose.add_argument("--camera-model", default="OPENCV",
                      help="COLMAP camera model: OPENCV (default: focal x/y, centre, k1 k2 "
                           "p1 p2), PINHOLE, SIMPLE_PINHOLE, SIMPLE_RADIAL or RADIAL")

    demo = commands.add_parser("demo", help="the main job: make the default scene if missing, "
                                            "train, distil features, render the test views, "
                                            "segment every object from scribbles and mesh one")
    demo.add_argument("--root", type=Path, help="folder for scenes/default and runs/default "
                                                "(default: the checkout, else the current one)")
    demo.add_argument("--object", help="the benchmark object to refine and mesh (default: the "
                                       "benchmark's demo_object, else its first)")
    _add_set(demo)
    _add_device(demo)
    return parser


def _print_metrics(metrics: dict, out_dir: Path) -> None:
    mean = metrics["mean"]
    cosine = ""
    if "feature_cosine" in mean:
        shown = mean["feature_cosine"]
        cosine = (f", feature cosine {'n/a' if shown is None else f'{shown:.3f}'} "
                  f"(all pixels {mean['feature_cosine_all']:.3f})")
    print(f"{len(metrics['per_view'])} {metrics['views']} views: PSNR {mean['psnr']:.2f} dB, "
          f"SSIM {mean['ssim']:.3f}{cosine}")
    print(f"renders and metrics.json in {out_dir}")


def _train_and_distill(scene, resume: bool, final_eval: bool) -> None:
    report = scene.train(resume=resume, final_eval=final_eval)
    final = f"; test PSNR {report.final_psnr:.2f} dB" if report.final_psnr is not None else ""
    print(f"colour: {report.steps} steps, {report.seconds:.0f} s{final}")
    if scene.config.distill.steps > 0:
        report = scene.distill(resume=resume, final_eval=final_eval)
        final = (f"; test feature cosine {report.test_cosine:.3f}"
                 if report.test_cosine is not None else "")
        print(f"features: {report.steps} steps, {report.seconds:.0f} s{final}")
    print(f"checkpoint: {scene.checkpoint_path}")


def cmd_train(args) -> None:
    from engine.scene import Scene

    scene = Scene(load_config(args.config, args.overrides), args.device)
    print(scene.data.summary(), file=sys.stderr)
    _train_and_distill(scene, args.resume, final_eval=True)


def cmd_features(args) -> None:
    from engine.scene import Scene

    overrides = list(args.overrides)
    if args.weights is not None:
        overrides.append(f"features.weights={str(args.weights)!r}")
    scene = Scene(load_config(args.config, overrides), args.device)
    print(scene.data.summary(), file=sys.stderr)
    started = time.perf_counter()
    maps = scene.extract_features(use_cache=not args.no_cache)
    n, h, w, dims = maps.maps.shape
    print(f"{scene.config.features.backbone}: {n} images -> {w}x{h} feature maps of {dims} "
          f"channels ({time.perf_counter() - started:.1f} s)")
    if maps.path is not None and not args.no_cache:
        print(f"cache: {maps.path}")


def cmd_render(args) -> None:
    from engine.scene import Scene

    scene = Scene.from_checkpoint(args.checkpoint, args.device)
    _print_metrics(scene.render_views(args.views, args.out, features=args.features), args.out)


def scene_with_overrides(checkpoint: Path, overrides: list[str], device):
    """A trained scene, with `--set segment.*` / `mesh.*` applied to its config."""
    from engine.scene import Scene

    if not checkpoint.is_file():
        raise IsrfError(f"{checkpoint}: checkpoint not found")
    scene = Scene.from_checkpoint(checkpoint, device)
    for item in overrides:
        if not item.split("=", 1)[0].strip().startswith(("segment.", "mesh.")):
            raise IsrfError(f"--set {item!r}: only segment.* and mesh.* can be changed here")
    if overrides:
        raw = config_to_dict(scene.config)
        scene.config = config_from_dict(apply_overrides(raw, overrides), "--set")
    return scene


def cmd_segment(args) -> None:
    from engine.mesh.export import save_mesh
    from engine.segment.strokes import load_strokes_file

    strokes = load_strokes_file(args.strokes)
    scene = scene_with_overrides(args.checkpoint, args.overrides, args.device)
    session = scene.segmentation
    summary = {"checkpoint": str(args.checkpoint), "segments": []}
    for item in strokes.segments:
        session.add_segment(item.name, item.params)
        for number, stroke in enumerate(item.strokes, 1):
            with where(f"{args.strokes}: segment {item.name!r}, stroke {number}"):
                result = session.stroke(item.name, stroke)
            print(f"{item.name}: {result.label} stroke, {result.pixels} px -> {result.region} "
                  f"voxels ({result.rounds} growth rounds, {result.seconds:.2f} s); "
                  f"segment {result.mask} voxels")
        if item.refine is not None or args.refine:
            with where(f"{args.strokes}: segment {item.name!r}"):
                _print_refine(session.refine(item.name, item.refine, progress=True))
    session_path = session.save(args.out / "session.npz")
    for item in strokes.segments:
        out_dir = args.out / item.name
        views = scene.export_segment(item.name, out_dir, args.views,
                                     photo_assist=args.photo_assist)
        entry = {"name": item.name, "voxels": int(session.mask(item.name).sum()), "views": views}
        if args.mesh != "none":
            mesh_path = out_dir / f"mesh.{args.mesh}"
            mesh = scene.mesh(item.name)
            save_mesh(mesh, mesh_path)
            entry.update(mesh=mesh_path.name, vertices=len(mesh.vertices), faces=len(mesh.faces))
            print(f"{item.name}: mesh {mesh_path} ({len(mesh.vertices)} vertices, "
                  f"{len(mesh.faces)} faces)")
        summary["segments"].append(entry)
        print(f"{item.name}: masks and renders of {len(views)} views in {out_dir}")
    write_json(args.out / "summary.json", summary)
    print(f"session: {session_path}")


def _print_refine(result) -> None:
    print(f"{result.segment}: refined with {len(result.views)} views: {result.added} voxels "
          f"added ({result.seconds:.1f} s); segment {result.mask} voxels")


def cmd_eval(args) -> None:
    from engine.segment.benchmark import format_table, load_benchmark, run_benchmark

    spec = load_benchmark(args.benchmark)
    spec_dir = args.benchmark.resolve().parent
    checkpoint = args.checkpoint
    if checkpoint is None:
        if spec.checkpoint is None:
            raise IsrfError(f"{args.benchmark}: names no checkpoint; give --checkpoint")
        checkpoint = spec_dir / spec.checkpoint
    scene = scene_with_overrides(checkpoint, args.overrides, args.device)
    results = run_benchmark(scene, spec, scene_dir=spec_dir / spec.scene, refine=args.refine)
    results = {"benchmark": str(args.benchmark), "checkpoint": str(checkpoint), **results}
    print(format_table(results))
    if args.out is not None:
        write_json(args.out, results)
        print(f"results: {args.out}")


def ensure_default_scene(path: Path | None = None) -> Path:
    """Render the embedded default scene with Blender (bpy) the first time it is needed."""
    path = path or default_scene_dir()
    if (path / "transforms.json").is_file():
        return path
    if importlib.util.find_spec("bpy") is None:
        raise IsrfError(f"{path}: no default scene yet, and making it needs Blender's Python "
                        "module: pip install bpy==5.0.1 (or give data.path a scene)")
    print(f"making the default scene in {path} (Blender, Cycles on the CPU; a few minutes)",
          file=sys.stderr)
    # Blender prints a "Saved: ..." line per render on stdout; the script's own progress
    # goes to stderr.
    result = subprocess.run([sys.executable, "-m", "engine.data.synthetic_scene", "--out", str(path)],
                            stdout=subprocess.DEVNULL)
    if result.returncode != 0:
        raise IsrfError(f"engine/data/synthetic_scene.py: rendering the default scene failed "
                        f"(exit code {result.returncode})")
    return path


def cmd_demo(args) -> None:
    from engine.scene import Scene
    from engine.segment.benchmark import load_benchmark

    root = default_root(args.root)
    spec = load_benchmark(default_benchmark())
    mesh_object = spec.mesh_object(args.object)   # checked before hours of training
    scene_path = ensure_default_scene(default_scene_dir(root))
    overrides = [f"data.path={str(scene_path)!r}",
                 f"train.out_dir={str(root / 'runs' / 'default')!r}", *args.overrides]
    scene = Scene(load_config(default_config(), overrides), args.device)
    print(scene.data.summary(), file=sys.stderr)
    _train_and_distill(scene, resume=False, final_eval=False)  # the test views are scored next
    out_dir = Path(scene.config.train.out_dir) / "test_views"
    with_features = scene.config.distill.steps > 0
    _print_metrics(scene.render_views("test", out_dir, features=with_features), out_dir)
    if with_features:
        _demo_segmentation(scene, spec, scene_path, mesh_object,
                           Path(scene.config.train.out_dir) / "segment")


def _demo_segmentation(scene, spec, scene_dir: Path, name: str, out_dir: Path) -> None:
    """Score the default benchmark (every object from its scribbles), then refine object
    `name` with every third training view and write its mesh, per-view masks and renders."""
    from engine.mesh.export import save_mesh
    from engine.segment.benchmark import format_table, run_benchmark

    results = run_benchmark(scene, spec, scene_dir=scene_dir)
    write_json(out_dir / "benchmark.json", results)
    print(format_table(results))
    session = scene.segmentation
    # After scoring: its voxels, and so its mesh, take what its 2D masks saw in many views.
    _print_refine(session.refine(name, progress=True))
    session.save(out_dir / "session.npz")
    views = scene.export_segment(name, out_dir / name, "all")
    mesh_path = save_mesh(scene.mesh(name), out_dir / name / "mesh.ply")
    print(f"{name}: mesh {mesh_path}; masks and renders of {len(views)} views in "
          f"{out_dir / name}")


def cmd_pose(args) -> None:
    from engine.data.pose import pose_photos, pose_video

    if (args.photos is None) == (args.video is None):
        raise IsrfError("give a folder of photos or --video FILE (one of them)")
    source = args.video if args.video is not None else args.photos
    out = args.out or Path("scenes") / source.stem
    if args.max_size < 100:
        raise IsrfError(f"--max-size must be at least 100 pixels, got {args.max_size}")
    if args.video is not None:
        report = pose_video(args.video, args.fps, out, args.max_size, args.camera_model)
    else:
        report = pose_photos(args.photos, out, args.max_size, camera_model=args.camera_model)
    print(report.summary())
    print(f"scene: {out}\ntrain it: {train_command(out, report.layout, report.long_side)}")


def train_command(scene: Path, layout: str, long_side: int) -> str:
    """The command that trains a posed capture: the shipped config for its camera layout,
    photos read at about TRAIN_LONG_SIDE pixels (a phone's 4000 px would fill the memory)."""
    preset = "capture_forward" if layout == "forward-facing" else "capture_360"
    command = (f"isrf train --config {preset} --set data.path={shlex.quote(str(scene))} "
               f"--set train.out_dir={shlex.quote(str(Path('runs') / scene.name))}")
    downscale = max(1, round(long_side / TRAIN_LONG_SIDE))
    return command + (f" --set data.downscale={downscale}" if downscale > 1 else "")


def cmd_serve(args) -> None:
    from engine.serve.main import serve

    if not 0 <= args.port <= 65535:
        raise IsrfError(f"--port {args.port}: expected 0-65535")
    serve(args.host, args.port, args.token_file, args.device, args.state_dir,
          args.allow_remote, args.parent_pid)


COMMANDS = {"serve": cmd_serve, "train": cmd_train, "features": cmd_features, "render": cmd_render,
            "segment": cmd_segment, "eval": cmd_eval, "demo": cmd_demo, "pose": cmd_pose}


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"isrf: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.formatwarning = _one_line_warning
    try:
        COMMANDS[args.command](args)
    except Cancelled as error:
        print(f"isrf: {error}", file=sys.stderr)
        return 130
    except IsrfError as error:
        print(f"isrf: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
