"""The parts of segmentation that need no trained field: brushes, strokes, region growing
on hand-made voxel grids with known answers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.config import DataConfig, SegmentConfig
from engine.data import load_scene
from engine.errors import IsrfError
from engine.segment.auto_scribbles import corrective_stroke
from engine.segment.colour import with_colour
from engine.segment.grow import bilateral_grow, bilateral_scores, propagate
from engine.segment.kmeans import cluster_centres
from engine.segment.region import StrokeView, select_region, stroke_centres
from engine.segment.strokes import (Stroke, load_strokes_file, mask_to_polylines,
                                    parse_stroke, rasterize, stroke_pixels)
from engine.segment.voxels import NEIGHBOUR_OFFSETS, VoxelDomain
from real_scenes import FERN, needs_fern
from locations import REPO


# ----- brush -----------------------------------------------------------------------------
def _brute_force_brush(polylines, radius, width, height) -> np.ndarray:
    """The oracle: every pixel centre's distance to every segment, one at a time."""
    painted = np.zeros((height, width), bool)
    for j in range(height):
        for i in range(width):
            p = np.array([i + 0.5, j + 0.5])
            for line in polylines:
                points = np.asarray(line, float)
                pairs = zip(points[:-1], points[1:]) if len(points) > 1 else [(points[0], points[0])]
                for a, b in pairs:
                    d = b - a
                    t = 0.0 if not d.any() else np.clip((p - a) @ d / (d @ d), 0, 1)
                    if np.sum((p - (a + t * d)) ** 2) < radius * radius:
                        painted[j, i] = True
    return painted


def test_brush_matches_the_brute_force_oracle():
    rng = np.random.default_rng(0)
    for _ in range(5):
        polylines = [rng.uniform(-5, 35, (rng.integers(1, 5), 2)).tolist() for _ in range(2)]
        radius = float(rng.uniform(1, 6))
        np.testing.assert_array_equal(rasterize(polylines, radius, 30, 20),
                                      _brute_force_brush(polylines, radius, 30, 20))


def test_brush_known_shapes():
    dot = rasterize([[(4.5, 3.5)]], 1.0, 10, 8)
    assert dot.sum() == 1 and dot[3, 4]
    line = rasterize([[(2.5, 5.5), (8.5, 5.5)]], 1.0, 10, 8)
    assert np.array_equal(np.nonzero(line)[1], np.arange(2, 9)) and set(np.nonzero(line)[0]) == {5}
    disc = rasterize([[(10.5, 10.5)]], 3.0, 21, 21)
    assert disc.sum() == sum(1 for x in range(-2, 3) for y in range(-2, 3) if x * x + y * y < 9)


def test_scribble_images_become_strokes_that_paint_them_exactly():
    rng = np.random.default_rng(1)
    mask = rng.random((17, 23)) < 0.3
    assert np.array_equal(rasterize(mask_to_polylines(mask), 1.0, 23, 17), mask)


def test_strokes_outside_the_image_paint_nothing_and_say_so():
    stroke = parse_stroke({"camera": {"view": 0}, "polylines": [[[-50, -50], [-20, -40]]]})
    with pytest.raises(IsrfError, match="paints no pixel"):
        stroke_pixels(stroke, 32, 32)
    half = parse_stroke({"camera": {"view": 0}, "polylines": [[[-10, 5.5], [5.5, 5.5]]], "radius": 1})
    cols, rows = stroke_pixels(half, 32, 32)
    assert list(cols) == list(range(0, 6)) and set(rows.tolist()) == {5}


@pytest.mark.parametrize("raw, names", [
    ({"camera": {"view": 0}, "polylines": [[[1, 1]]], "radius": 0.5}, "radius"),
    ({"camera": {"view": 0}, "polylines": [[[1, 1]]], "colour": "red"}, "colour: unknown key"),
    ({"camera": {"view": 0}, "polylines": []}, "polylines"),
    ({"camera": {"view": 0}, "polylines": [[]]}, "at least one point"),
    ({"camera": {"view": 0}, "polylines": [[[1, "x"]]]}, "polylines"),
    ({"camera": {"view": 0}, "polylines": [[[1, float("nan")]]]}, "polylines"),
    ({"camera": {"view": 0}, "polylines": [[[1, 1]]], "label": "maybe"}, "label"),
    ({"camera": {}, "polylines": [[[1, 1]]]}, "explicit camera needs"),
    ({"camera": {"view": -1}, "polylines": [[[1, 1]]]}, "camera.view"),
    ({"camera": {"view": 1, "width": 10}, "polylines": [[[1, 1]]]}, "either view or"),
    ({"camera": {"intrinsics": [50, 50, 16, 16], "width": 32, "height": 32,
                 "c2w": [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]},
      "polylines": [[[1, 1]]]}, "orthonormal"),
    ({"camera": {"intrinsics": [50, -50, 16, 16], "width": 32, "height": 32,
                 "c2w": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]},
      "polylines": [[[1, 1]]]}, "focal lengths"),
])
def test_bad_strokes_are_refused_naming_the_problem(raw, names):
    with pytest.raises(IsrfError, match=names):
        parse_stroke(raw)


def test_explicit_opengl_camera_equals_its_opencv_twin():
    from engine.data.cameras import Cameras

    dataset = Cameras(torch.eye(4)[None], torch.tensor([[50.0, 50, 16, 16]]), torch.zeros(1, 4), 32, 32)
    gl = np.eye(4)
    gl[:3, 3] = [0.5, -0.2, 3.0]
    cv = gl @ np.diag([1.0, -1, -1, 1])
    common = {"intrinsics": [40, 41, 15, 17], "width": 32, "height": 30}
    a = Stroke.model_validate({"camera": {**common, "c2w": gl.tolist(), "convention": "opengl"},
                               "polylines": [[[1, 1]]]}).camera.resolve(dataset)
    b = Stroke.model_validate({"camera": {**common, "c2w": cv.tolist()},
                               "polylines": [[[1, 1]]]}).camera.resolve(dataset)
    assert torch.allclose(a.c2w, b.c2w) and (a.width, a.height) == (32, 30)
    with pytest.raises(IsrfError, match="view 3 does not exist"):
        Stroke.model_validate({"camera": {"view": 3}, "polylines": [[[1, 1]]]}).camera.resolve(dataset)


FERN_STROKES = REPO / "benchmarks" / "fern_strokes.json"


@needs_fern
def test_the_fern_benchmark_strokes_lie_inside_fern_images_4():
    """scripts/bench_segment.py's GPU case paints these on fern at 1/4 resolution."""
    cameras = load_scene(DataConfig(path=str(FERN), downscale=4)).cameras
    for segment in load_strokes_file(FERN_STROKES).segments:
        for stroke in segment.strokes:
            camera = stroke.camera.resolve(cameras)
            points = np.concatenate([np.asarray(line) for line in stroke.polylines])
            assert (points >= 0).all() and (points < [camera.width, camera.height]).all()
            assert len(stroke_pixels(stroke, camera.width, camera.height)[0]) > 100 * stroke.radius


def test_corrective_strokes_paint_the_largest_wrong_region_and_leave_slivers_alone():
    """The simulated artist of scripts/bench_corrections.py: green inside what was missed,
    red inside what was taken too, nothing for a strip along the outline."""
    truth = np.zeros((60, 80), bool)
    truth[10:50, 10:50] = True
    predicted = truth.copy()
    predicted[20:35, 20:35] = False                 # a 15 x 15 hole: missed
    stroke, inner = corrective_stroke(4, truth, predicted)
    assert stroke["label"] == "positive" and stroke["camera"] == {"view": 4}
    assert inner == 9 * 9                           # the hole, 3 px inside its outline
    cols, rows = stroke_pixels(parse_stroke(stroke), 80, 60)
    assert ((rows >= 20) & (rows < 35) & (cols >= 20) & (cols < 35)).all()

    predicted[5:55, 55:78] = True                   # a larger region taken too
    stroke, inner = corrective_stroke(4, truth, predicted)
    cols, rows = stroke_pixels(parse_stroke(stroke), 80, 60)
    assert stroke["label"] == "negative" and inner == 44 * 17
    assert (~truth[rows, cols] & (cols >= 55)).all()

    sliver = truth.copy()
    sliver[10:50, 10:12] = False                    # 2 px along the outline
    assert corrective_stroke(4, truth, sliver) is None
    stroke, inner = corrective_stroke(4, truth, sliver, inset=0, min_pixels=80)
    assert stroke["label"] == "positive" and inner == 80     # painted with no inset
    assert corrective_stroke(4, truth, truth) is None


# ----- region growing on hand-made grids -----------------------------------------------------
def _domain(occupied: np.ndarray, features: np.ndarray) -> VoxelDomain:
    """A domain over the True voxels of `occupied` [X, Y, Z] with features [X, Y, Z, D]."""
    occupied_t = torch.from_numpy(occupied)
    coords = torch.nonzero(occupied_t)
    unit = torch.nn.functional.normalize(torch.from_numpy(features[occupied]).float(), dim=-1)
    return VoxelDomain.create(coords, list(occupied.shape), unit)


def test_distances_to_several_centre_sets_in_one_pass(monkeypatch):
    """nearest_distances(a, b) gives, in chunks, what each set's brute-force nearest
    squared distance is."""
    monkeypatch.setattr("engine.segment.voxels.CHUNK", 1000)       # several chunks
    rng = np.random.default_rng(0)
    occupied = rng.random((20, 20, 10)) < 0.8
    domain = _domain(occupied, rng.normal(size=(20, 20, 10, 8)))
    a, b = (torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(k, 8))).float(), dim=-1)
            for k in (3, 5))
    to_a, to_b = domain.nearest_distances(a, b)
    for centres, got in ((a, to_a), (b, to_b)):
        expected = torch.cdist(domain.features.float(), centres).pow(2).amin(1)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(domain.nearest_distances(b)[0], to_b)   # alone or paired
    assert domain.size > 2000


def _rows(domain: VoxelDomain, mask: np.ndarray) -> torch.Tensor:
    """A bool grid [X, Y, Z] as a domain mask [M]."""
    c = domain.coords.long()
    return torch.from_numpy(mask)[c[:, 0], c[:, 1], c[:, 2]]


def _two_halves(gap: bool = False):
    occupied = np.ones((12, 6, 6), bool)
    if gap:
        occupied[6] = False
    features = np.zeros((12, 6, 6, 4), np.float32)
    features[:6, ..., 0] = 1
    features[6:, ..., 1] = 1 if not gap else 0
    features[6:, ..., 0] = 0 if not gap else 1
    return occupied, features


def test_growth_fills_the_similar_half_and_stops_at_the_feature_edge():
    occupied, features = _two_halves()
    domain = _domain(occupied, features)
    seed = np.zeros(occupied.shape, bool)
    seed[1:3, 2:4, 2:4] = True
    allowed = torch.ones(domain.size, dtype=torch.bool)
    grown, rounds = bilateral_grow(domain, _rows(domain, seed), allowed, sigma_f=0.1, sigma_d=1.0,
                                   join=0.1, max_rounds=100)
    expected = np.zeros(occupied.shape, bool)
    expected[:6] = True
    assert torch.equal(grown, _rows(domain, expected))
    assert 0 < rounds < 100
    # a bound on the rounds stops it early, one voxel layer a round
    one, rounds = bilateral_grow(domain, _rows(domain, seed), allowed, 0.1, 1.0, 0.1, max_rounds=1)
    assert rounds == 1 and seed.sum() < int(one.sum()) < expected.sum()


def test_colour_tips_a_blended_patch_to_the_background():
    """Three blocks in a row: the object (feature A, magenta), a patch whose feature is a
    blend leaning to A but whose colour is the table's (the table seen through the torus's
    hole, as a CNN sees it), and the table (feature T, brown), whose centre is the
    background model's rival. From features alone a stroke on the object takes the patch
    too; with colour the patch is nearer the rival, and only the object is taken."""
    occupied = np.ones((15, 6, 6), bool)
    angle = np.radians([0.0] * 5 + [17.0] * 5 + [40.0] * 5)[:, None, None]   # A, blend, T
    features = np.zeros((15, 6, 6, 4), np.float32)
    features[..., 0], features[..., 1] = np.cos(angle), np.sin(angle)
    magenta, brown = [0.8, 0.2, 0.8], [0.35, 0.2, 0.1]
    rgb = np.zeros((15, 6, 6, 3), np.float32)
    rgb[:5], rgb[5:] = magenta, brown
    coords = torch.nonzero(torch.from_numpy(occupied))
    params = SegmentConfig(clusters=1)
    on_object = torch.arange(10)                                # voxels (0, 0, 0..5), (0, 1, 0..3)
    taken = {}
    for weight in (0.0, 0.5):
        table = with_colour(torch.from_numpy(features[occupied]), torch.from_numpy(rgb[occupied]),
                            weight)
        domain = VoxelDomain.create(coords, list(occupied.shape), table)
        pixels = with_colour(torch.tensor([[1.0, 0, 0, 0]]), torch.tensor([magenta]), weight)
        rival = with_colour(torch.from_numpy(features[-1, 0, 0])[None], torch.tensor([brown]), weight)
        view = StrokeView(1, pixels, on_object)
        region = select_region(domain, view, stroke_centres(view, params), params,
                               scene_centres=rival)
        taken[weight] = region.voxels
    block = np.arange(15)[:, None, None] // 5 + np.zeros((15, 6, 6), int)
    assert torch.equal(taken[0.0], _rows(domain, block <= 1))     # object and patch
    assert torch.equal(taken[0.5], _rows(domain, block == 0))     # the object alone


def test_growth_never_crosses_empty_space_or_blocked_voxels():
    occupied, features = _two_halves(gap=True)          # both halves alike, a plane of air
    domain = _domain(occupied, features)
    seed = np.zeros(occupied.shape, bool)
    seed[1:3, 2:4, 2:4] = True
    allowed = torch.ones(domain.size, dtype=torch.bool)
    grown, _ = bilateral_grow(domain, _rows(domain, seed), allowed, 0.1, 1.0, 0.1, 100)
    expected = np.zeros(occupied.shape, bool)
    expected[:6] = True
    assert torch.equal(grown, _rows(domain, expected))
    blocked = np.zeros(occupied.shape, bool)
    blocked[3:] = True                                   # a wall the region may not enter
    grown, _ = bilateral_grow(domain, _rows(domain, seed), ~_rows(domain, blocked), 0.1, 1.0, 0.1, 100)
    assert torch.equal(grown, _rows(domain, occupied & ~blocked & (np.arange(12) < 6)[:, None, None]))


def test_propagation_reaches_the_cube_of_its_round_count():
    occupied = np.ones((15, 15, 15), bool)
    domain = _domain(occupied, np.ones((15, 15, 15, 2), np.float32))
    start = np.zeros(occupied.shape, bool)
    start[7, 7, 7] = True
    everywhere = torch.ones(domain.size, dtype=torch.bool)
    for rounds in (0, 1, 3):
        reached = propagate(domain, _rows(domain, start), everywhere, rounds)
        expected = np.zeros(occupied.shape, bool)
        expected[7 - rounds:8 + rounds, 7 - rounds:8 + rounds, 7 - rounds:8 + rounds] = True
        assert torch.equal(reached, _rows(domain, expected))


JOIN = 0.25


def _noisy_halves(device: str = "cpu"):
    """A 14 x 12 x 10 grid, 80% occupied, of noisy features with an edge at x = 7, where
    many votes fail and pass only after more neighbours joined -> (domain, seeds [M],
    allowed [M]: 90% of the voxels)."""
    rng = np.random.default_rng(5)
    occupied = rng.random((14, 12, 10)) < 0.8
    features = np.zeros((14, 12, 10, 3), np.float32)
    features[..., 0] = 1
    features[7:, ..., 0], features[7:, ..., 1] = 0, 1
    features += 0.2 * rng.normal(size=features.shape).astype(np.float32)
    domain = _domain(occupied, features)
    block = np.zeros(occupied.shape, bool)
    block[2:5, 4:7, 3:6] = True
    seeds = _rows(domain, block)
    allowed = torch.from_numpy(rng.random(domain.size) < 0.9) | seeds
    if device != "cpu":
        domain = VoxelDomain.create(domain.coords.to(device), domain.resolution,
                                    domain.features.to(device))
    return domain, seeds.to(device), allowed.to(device)


@pytest.mark.parametrize("masked_frontier", [False, True], ids=["cpu-frontier", "gpu-frontier"])
def test_growth_matches_a_voxel_by_voxel_reference(monkeypatch, masked_frontier):
    """Round by round, the free neighbours of what just joined are voted on, whichever
    way the frontier is kept (the GPU's way is run here on the CPU)."""
    monkeypatch.setattr("engine.segment.grow.masks_frontier", lambda device: masked_frontier)
    domain, seeds, allowed = _noisy_halves()
    grown, rounds = bilateral_grow(domain, seeds, allowed, 0.5, 1.5, join=JOIN, max_rounds=50)

    # the reference votes on dense masks: the free neighbours of what just joined
    region, just_joined, expected_rounds = seeds.clone(), seeds.clone(), 0
    nearby = domain.neighbours(torch.arange(domain.size))
    while just_joined.any() and expected_rounds < 50:
        touching = (just_joined[nearby.clamp_min(0)] & (nearby >= 0)).any(1)
        candidates = torch.nonzero(touching & allowed & ~region)[:, 0]
        if len(candidates) == 0:
            break
        joined = candidates[bilateral_scores(domain, candidates, region, 0.5, 1.5) > JOIN]
        region[joined] = True
        just_joined = torch.zeros_like(region)
        just_joined[joined] = True
        expected_rounds += 1
    assert torch.equal(grown, region) and rounds == expected_rounds
    first_half = allowed & (domain.coords[:, 0] < 7)
    assert torch.equal(grown, first_half) and rounds > 10   # grew over its half, stopped at the edge
    # propagation, the same way: the 26-connected allowed voxels reachable from the seeds
    reached, _ = bilateral_grow(domain, seeds, allowed, 0.5, 1.5, join=0.0, max_rounds=10**6)
    assert torch.equal(propagate(domain, seeds, allowed), reached)


def _growth_results(device: str, kernels: str) -> list:
    """Growth (unbounded, and stopped after 3 rounds) and propagation (unbounded, and 2
    rounds) on `_noisy_halves`, as CPU tensors and round counts."""
    domain, seeds, allowed = _noisy_halves(device)
    results = []
    for max_rounds in (50, 3):
        grown, rounds = bilateral_grow(domain, seeds, allowed, 0.5, 1.5, JOIN, max_rounds,
                                       kernels=kernels)
        results += [grown.cpu(), rounds]
    for max_rounds in (None, 2):
        results.append(propagate(domain, seeds, allowed, max_rounds, kernels=kernels).cpu())
    return results


def _same(first: list, second: list) -> bool:
    return all(torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b
               for a, b in zip(first, second, strict=True))


def test_fused_growth_kernels_match_the_torch_growth_in_tritons_interpreter():
    """grow_fused.py's Triton kernels, run by Triton's interpreter on the CPU (the GPU's
    kernels, a GPU's atomics aside), against the PyTorch growth (a fresh process: the
    interpreter is chosen when the kernels are defined)."""
    pytest.importorskip("triton", reason="Triton is not installed")
    script = ("import sys, torch\n"
              "from test_segment_core import _growth_results, _same\n"
              "fused = _growth_results('cpu', 'triton')\n"
              "reference = _growth_results('cpu', 'torch')\n"
              "assert fused[0].sum() > 500 and fused[2].sum() < fused[0].sum(), fused\n"
              "print('same' if _same(fused, reference) else f'differ: {fused} {reference}')\n")
    here = Path(__file__).parent
    done = subprocess.run([sys.executable, "-c", script], cwd=here, capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "TRITON_INTERPRET": "1",
                               "PYTHONPATH": os.pathsep.join(map(str, [here, REPO / "tests", REPO]))})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "same", done.stdout[-3000:]


def _fused_kernel_signatures() -> dict:
    """Each kernel of grow_fused.py -> (its arguments' Triton types as a GPU passes them,
    its variants' constexprs). A GPU's features, hence the similarity table, are float16."""
    from engine.segment import grow_fused
    rows = {"flat": "*i64", "steps": "*i64", "padded": "*i32"}   # VoxelDomain's tensors
    return {
        grow_fused._expand: (
            {"frontier": "*i32", "count": "i32", **rows, "free": "*i32", "claim": "*i32",
             "out": "*i32", "counter": "*i32", "JOIN_NOW": "constexpr", "BLOCK": "constexpr"},
            [{"JOIN_NOW": False, "BLOCK": grow_fused.BLOCK},
             {"JOIN_NOW": True, "BLOCK": grow_fused.BLOCK}]),
        grow_fused._vote: (
            {"candidates": "*i32", "count": "i32", **rows, "similarity": "*fp16",
             "region": "*i8", "offset": "*fp32", "scale": "fp32", "join": "fp32",
             "joined": "*i8", "BLOCK": "constexpr"},
            [{"BLOCK": grow_fused.VOTERS}]),
        grow_fused._apply: (
            {"candidates": "*i32", "count": "i32", "joined": "*i8", "region": "*i8",
             "free": "*i32", "claim": "*i32", "following": "*i32", "BLOCK": "constexpr"},
            [{"BLOCK": grow_fused.BLOCK}]),
    }


@pytest.mark.filterwarnings("ignore:TRITON_DEFAULT_FP_FUSION")   # Triton 3.9's notice
@pytest.mark.parametrize("capability", [80, 90], ids=["ampere", "hopper"])
def test_fused_growth_kernels_compile_to_gpu_code_without_a_gpu(capability):
    """The interpreter runs the kernels' Python, not Triton's compiler: this compiles each
    kernel ahead of time, through Triton's passes and ptxas, for an A100 (sm_80) and an
    H100/H200 (sm_90), as a GPU session would at its start."""
    triton = pytest.importorskip("triton", reason="Triton is not installed")
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("under TRITON_INTERPRET=1 the kernels are the interpreter's, not compilable")
    if "nvidia" not in triton.backends.backends:
        pytest.skip("this Triton has no NVIDIA backend")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    for kernel, (signature, variants) in _fused_kernel_signatures().items():
        names = list(signature)
        for constants in variants:
            source = ASTSource(fn=kernel, signature=signature,
                               constexprs={(names.index(k),): v for k, v in constants.items()})
            compiled = triton.compile(source, target=GPUTarget("cuda", capability, 32))
            assert len(compiled.asm["cubin"]) > 1000, (kernel.__name__, constants)
            assert f".target sm_{capability}" in compiled.asm["ptx"]


def test_asking_for_the_fused_kernels_where_they_cannot_run_names_the_device(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    domain, seeds, allowed = _noisy_halves()
    with pytest.raises(IsrfError, match="cannot run on cpu"):
        propagate(domain, seeds, allowed, kernels="triton")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kernels", ["triton", "torch"])
def test_cuda_growth_and_propagation_match_the_cpu(kernels):
    """On a GPU: the fused kernels (atomics included), and the PyTorch way there (masked
    frontier, -1 wrapping to the spare slot)."""
    assert _same(_growth_results("cuda", kernels), _growth_results("cpu", "torch"))


def test_neighbours_and_lookups_match_the_grid_including_its_faces():
    """Voxels on the grid's faces have neighbours outside it: those must read as empty."""
    rng = np.random.default_rng(3)
    occupied = rng.random((5, 4, 3)) < 0.6
    domain = _domain(occupied, rng.normal(size=(5, 4, 3, 2)).astype(np.float32))
    found = domain.neighbours(torch.arange(domain.size))
    for row, position in enumerate(domain.coords.long()):
        for column, offset in enumerate(NEIGHBOUR_OFFSETS.long()):
            q = position + offset
            outside = (q < 0).any() or (q >= torch.tensor(occupied.shape)).any()
            expected = -1 if outside or not occupied[tuple(q)] else int(domain.index[tuple(q)])
            assert int(found[row, column]) == expected
    assert domain.lookup(torch.tensor([[-1, 0, 0], [5, 0, 0], [0, 0, 3]])).tolist() == [-1, -1, -1]
    assert (domain.lookup(domain.coords.long()) == torch.arange(domain.size)).all()


def test_neighbour_similarity_is_each_neighbours_dot_product(monkeypatch):
    """The cached [M, 26] table the growth reads, computed in chunks smaller than the grid
    (both halves of each opposite pair of offsets filled from one product)."""
    monkeypatch.setattr("engine.segment.voxels.SIMILARITY_CHUNK", 7)
    rng = np.random.default_rng(4)
    occupied = rng.random((6, 5, 4)) < 0.6
    domain = _domain(occupied, rng.normal(size=(6, 5, 4, 3)).astype(np.float32))
    table = domain.neighbour_similarity()
    found = domain.neighbours(torch.arange(domain.size))
    unit = domain.features.float()
    expected = torch.where(found >= 0, (unit[:, None] * unit[found.clamp_min(0)]).sum(-1),
                           torch.tensor(float("-inf")))
    assert table.shape == (domain.size, 26)
    assert torch.allclose(table.float(), expected, atol=1e-6)
    assert domain.neighbour_similarity() is table     # computed once


def test_bilateral_scores_match_a_voxel_by_voxel_reference():
    rng = np.random.default_rng(2)
    occupied = rng.random((7, 6, 5)) < 0.7
    features = rng.normal(size=(7, 6, 5, 3)).astype(np.float32)
    domain = _domain(occupied, features)
    region = torch.from_numpy(rng.random(domain.size) < 0.4)
    candidates = torch.arange(domain.size)
    fast = bilateral_scores(domain, candidates, region, sigma_f=0.5, sigma_d=1.5)
    unit = domain.features.float()
    coords = domain.coords.long()
    for row in range(domain.size):
        num = den = 0.0
        for offset in NEIGHBOUR_OFFSETS.long():
            q = coords[row] + offset
            if (q < 0).any() or (q >= torch.tensor(occupied.shape)).any() or not occupied[tuple(q)]:
                continue
            other = int(domain.index[tuple(q)])
            w = np.exp(-float(((unit[row] - unit[other]) ** 2).sum()) / 0.5 - float(offset.abs().sum()) / 1.5)
            num += w * float(region[other])
            den += w
        assert float(fast[row]) == pytest.approx(num / den if den else 0.0, abs=2e-3)


def test_stroke_centres_find_the_clusters_or_keep_the_few_distinct_pixels():
    generator = torch.Generator().manual_seed(0)
    blobs = F.normalize(torch.randn(3, 16, generator=generator), dim=-1)
    # 20k pixels around 3 features: faiss samples 256 per centre; every blob gets a centre
    pixels = blobs.repeat_interleave(7000, 0)[:20000] + 0.01 * torch.randn(20000, 16, generator=generator)
    centres = cluster_centres(pixels, 3)
    assert centres.shape == (3, 16)
    assert (torch.cdist(blobs, centres).amin(1) < 0.05).all()
    assert torch.equal(centres, cluster_centres(pixels, 3))          # replays give the same
    # no more distinct pixels than k (the first rows repeat): they are the centres
    few = torch.cat([blobs.repeat(30, 1), blobs[:1]])
    assert torch.equal(cluster_centres(few, 11), torch.from_numpy(np.unique(few.numpy(), axis=0)))
