"""The field's building blocks against closed-form answers: spaces, grids, compositing."""

from __future__ import annotations

import math

import pytest
import torch

from engine.config import FieldConfig
from engine.field import spaces
from engine.field.grids import DenseGrid, VMGrid
from engine.field.radiance_field import RadianceField
from engine.field.renderer import RaySpace, render_rays

INTRINSICS = (400.0, 380.0, 504.0, 378.0)  # fx, fy, W, H of the NDC reference camera


def test_ndc_rays_map_world_points_onto_the_ndc_ray():
    origins = torch.tensor([[0.1, -0.2, 0.0], [-0.3, 0.1, 0.05]])
    dirs = torch.tensor([[0.05, 0.02, -1.0], [-0.1, 0.08, -1.0]])
    o_ndc, d_ndc = spaces.ndc_rays(origins, dirs, INTRINSICS)
    for t in (0.0, 0.3, 0.7, 0.95):
        world = spaces.ndc_to_world(o_ndc + t * d_ndc, INTRINSICS)
        # the point lies on the world ray: its offset from the origin is parallel to dirs
        offset = world - origins
        cross = torch.linalg.cross(offset, dirs)
        assert cross.norm(dim=-1).max() < 1e-4 * offset.norm(dim=-1).max()
    assert torch.allclose(o_ndc[:, 2], torch.full((2,), -1.0))  # starts on the near plane
    assert torch.allclose((o_ndc + d_ndc)[:, 2], torch.ones(2))  # ends at infinity


def test_contraction_keeps_the_unit_cube_and_bounds_the_rest():
    inside = torch.rand(100, 3) * 2 - 1
    assert torch.equal(spaces.contract(inside), inside)
    far = torch.randn(100, 3) * 1000
    contracted = spaces.contract(far)
    assert contracted.abs().amax(-1).max() <= 1 + spaces.SHELL
    assert contracted.abs().amax(-1).min() > 1.0
    # along a ray outwards, the contracted distance keeps growing
    ray = torch.linspace(1.5, 500, 50)[:, None] * torch.tensor([[0.6, 0.3, 0.2]])
    norms = spaces.contract(ray).abs().amax(-1)
    assert (norms.diff() > 0).all()


def _linear(points: torch.Tensor) -> torch.Tensor:
    return 0.5 * points[..., 0] - 2.0 * points[..., 1] + points[..., 2] + 0.25


def test_dense_grid_resample_onto_a_smaller_box_is_exact_for_linear_fields():
    old_box = (torch.tensor([-1.0, -2.0, 0.0]), torch.tensor([1.0, 2.0, 3.0]))
    grid = DenseGrid(1, [9, 17, 13])
    axes = [torch.linspace(float(lo), float(hi), n) for lo, hi, n in zip(*old_box, [9, 17, 13])]
    with torch.no_grad():
        grid.grid[0, 0] = _linear(torch.stack(torch.meshgrid(*axes, indexing="ij"), -1))
    new_box = (torch.tensor([-0.5, -1.0, 1.0]), torch.tensor([0.8, 1.5, 2.5]))
    grid.resample(old_box, new_box, [20, 31, 11])
    points = new_box[0] + torch.rand(200, 3) * (new_box[1] - new_box[0])
    coords = (points - new_box[0]) / (new_box[1] - new_box[0]) * 2 - 1
    assert torch.allclose(grid(coords)[:, 0], _linear(points), atol=1e-5)


def test_vm_grid_resample_preserves_its_values():
    vm = VMGrid(channels=5, rank=3, resolution=[8, 10, 12])
    with torch.no_grad():  # linear planes and lines: resampling them is exact
        for plane in vm.planes:
            a, b = plane.shape[2:]
            u = torch.linspace(-1, 1, a)[:, None]
            v = torch.linspace(-1, 1, b)[None, :]
            plane[0] = torch.stack([u + 2 * v, 0.5 * u - v + 1, -u + 0.2 + 0 * v])
        for line in vm.lines:
            w = torch.linspace(-1, 1, line.shape[2])[:, None]
            line[0] = torch.stack([w + 1, 2 * w, 0.3 - w])
    coords = torch.rand(300, 3) * 2 - 1
    with torch.no_grad():
        before = vm(coords * 0.5)  # points inside the central half of the box
    box = (torch.full((3,), -1.0), torch.ones(3))
    vm.resample(box, (torch.full((3,), -0.5), torch.full((3,), 0.5)), [15, 9, 21])
    with torch.no_grad():
        assert torch.allclose(vm(coords), before, atol=1e-5)


def test_constant_density_slab_has_the_analytic_opacity():
    config = FieldConfig(num_voxels=32**3, num_voxels_start=32**3, weight_threshold=0.0)
    box_min, box_max = torch.tensor([-1.0, -1.0, -1.0]), torch.tensor([1.0, 1.0, 1.0])
    field = RadianceField(config, box_min, box_max, 32**3)
    sigma = 0.05  # per final-grid voxel length
    with torch.no_grad():
        field.density.grid.fill_(math.log(math.expm1(sigma)) - field.act_shift)
    origins = torch.tensor([[-3.0, 0.1, 0.2], [0.3, -3.0, -0.4]])
    dirs = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    with torch.no_grad():
        out = render_rays(field, RaySpace("bounded", (1.0, 1.0, 1.0)), origins, dirs)
    voxels_crossed = 2.0 / float(field.final_voxel_size)  # the box is 2 units across
    expected = 1 - math.exp(-sigma * voxels_crossed)
    assert out["opacity"].tolist() == pytest.approx([expected, expected], abs=0.02)
    # colour = (opacity x field colour) + transmittance x white background
    assert (out["rgb"] <= 1.0).all() and (out["rgb"] >= 1 - expected - 1e-4).all()


def _blob_field() -> RadianceField:
    """Two dense balls in an otherwise empty box, its occupancy up to date."""
    config = FieldConfig(num_voxels=40**3, num_voxels_start=40**3)
    field = RadianceField(config, torch.full((3,), -1.0), torch.ones(3), 40**3)
    axes = [torch.linspace(-1, 1, n) for n in field.resolution]
    points = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)
    inside = ((points - torch.tensor([0.4, 0.1, 0.0])).norm(dim=-1) < 0.25) | (
        (points - torch.tensor([-0.5, -0.3, 0.2])).norm(dim=-1) < 0.15)
    with torch.no_grad():
        field.density.grid[0, 0] = torch.where(inside, 14.0, -30.0)  # opaque in 2 voxels
    field.update_occupancy()
    assert 0.01 < float(field.occupancy.float().mean()) < 0.2
    return field


def _rays(count: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    origins = torch.tensor([0.0, 0.0, -3.0]) + 0.3 * torch.randn(count, 3, generator=generator)
    targets = 0.9 * (torch.rand(count, 3, generator=generator) * 2 - 1)  # some miss the balls
    return origins, targets - origins


def test_the_lattice_occupancy_test_agrees_with_the_point_test():
    """`occupied_along` (no points made) gives what `occupied` gives for the same points,
    for the occupancy and for a segment's grid, along rays through the box."""
    field = _blob_field()
    origins, dirs = _rays(500, seed=3)
    unit = torch.nn.functional.normalize(dirs, dim=-1)
    t_in, t_out = spaces.ray_box(origins, unit, field.box_min, field.box_max)
    hits = t_out > t_in
    origins, unit, t_in, t_out = origins[hits], unit[hits], t_in[hits], t_out[hits]
    t = t_in[:, None] + (t_out - t_in)[:, None] * torch.linspace(0.0, 1.0, 97)   # [R, 97]
    points = origins[:, None] + unit[:, None] * t[..., None]
    half = torch.zeros_like(field.occupancy)
    half[: half.shape[0] // 2] = field.occupancy[: half.shape[0] // 2]
    for grid in (None, half):
        along = field.occupied_along(origins, unit, t, grid)
        at_points = field.occupied(points.reshape(-1, 3), grid).reshape(t.shape)
        assert along.any()
        # the two compute a coordinate in different float orders: a sample a rounding away
        # from a voxel face may fall on either side
        assert float((along != at_points).float().mean()) < 1e-3


def test_empty_space_skipping_keeps_every_occupied_sample(monkeypatch):
    from engine.field import renderer, skipping
    field, space = _blob_field(), RaySpace("bounded", (1.0, 1.0, 1.0))
    origins, dirs = _rays(2000)
    occupied_span = skipping.occupied_span
    with torch.no_grad():
        skipped = renderer.sample_rays(field, space, origins, dirs, jitter=False)
        monkeypatch.setattr(skipping, "occupied_span", lambda field, o, u, t_in, t_out, grid: (t_in, t_out))
        everything = renderer.sample_rays(field, space, origins, dirs, jitter=False)
    assert 0 < len(skipped.points) == len(everything.points)
    assert skipped.ray_index.tolist() == everything.ray_index.tolist()
    assert torch.allclose(skipped.points, everything.points, atol=1e-5)
    # and it is skipping: most rays' spans shrink
    o, u = origins, torch.nn.functional.normalize(dirs, dim=-1)
    t_in, t_out = spaces.ray_box(o, u, field.box_min, field.box_max)
    start, end = occupied_span(field, o, u, t_in.clamp_min(0), t_out, field.occupancy)
    assert float((end - start).clamp_min(0).sum()) < 0.5 * float((t_out - t_in).clamp_min(0).sum())


def test_early_stop_and_preview_against_the_full_march(monkeypatch):
    from engine.field import renderer
    monkeypatch.setattr(renderer, "WINDOW", 8)  # the balls are ~20 steps deep: several windows
    field, space = _blob_field(), RaySpace("bounded", (1.0, 1.0, 1.0))
    origins, dirs = _rays(3000, seed=1)
    with torch.no_grad():
        full = render_rays(field, space, origins, dirs)
        early = render_rays(field, space, origins, dirs, early_stop=True)
        preview = render_rays(field, space, origins, dirs, preview=True)
    hit = full["opacity"] > 0.5
    assert 100 < int(hit.sum()) < 2900                      # the rays see balls and background
    # stopping where less than the weight threshold of light is left changes nothing
    # that shows, and leaves fewer samples
    assert torch.allclose(early["rgb"], full["rgb"], atol=2e-3)
    assert torch.allclose(early["opacity"], full["opacity"], atol=2e-3)
    assert len(early["weights"]) < 0.8 * len(full["weights"])
    # the preview: the same silhouette, colours close
    assert (preview["opacity"] - full["opacity"]).abs().mean() < 0.02
    assert (preview["rgb"] - full["rgb"]).abs().mean() < 0.02
