"""Meshes: marching cubes on a hand-made sphere of density, placement in the world,
vertex colours from the field, options and file formats."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import trimesh
from scipy import ndimage

from engine.config import FieldConfig, MeshConfig
from engine.errors import IsrfError
from engine.field.radiance_field import RadianceField
from engine.field.renderer import RaySpace
from engine.mesh.accuracy import mesh_roughness
from engine.mesh.export import save_mesh
from engine.mesh.extract import _fill_cavities, extract_mesh, field_to_scene
from engine.field import spaces

CENTRE = torch.tensor([0.2, -0.1, 0.05])
RADIUS = 0.5
BOUNDED = RaySpace("bounded", (1.0, 1.0, 1.0))


def _sphere_field(extra_ball: tuple | None = None, hollow: float = 0.0, ripples: float = 0.0
                  ) -> RadianceField:
    """A 64^3 field on [-1, 1]^3 whose opacity crosses 0.5 exactly on the sphere
    |x - CENTRE| = RADIUS (raw density linear in the distance to the surface).
    hollow: the radius of an empty pocket inside it; ripples: the amplitude (voxels) of
    random voxel-to-voxel noise in the surface's position."""
    torch.manual_seed(0)
    field = RadianceField(FieldConfig(), -torch.ones(3), torch.ones(3), num_voxels=64**3)
    n = field.resolution
    axes = [torch.linspace(-1, 1, k) for k in n]
    points = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)
    signed = RADIUS - (points - CENTRE).norm(dim=-1)
    if extra_ball is not None:
        centre, radius = extra_ball
        signed = torch.maximum(signed, radius - (points - torch.tensor(centre)).norm(dim=-1))
    if hollow:
        signed = torch.minimum(signed, (points - CENTRE).norm(dim=-1) - hollow)
    if ripples:
        signed = signed + (torch.rand(signed.shape) * 2 - 1) * ripples * field.voxel_size
    # the mesh's opacity 1 - exp(-thickness * softplus(raw + shift)) is 0.5 where
    # softplus(raw + shift) = ln 2 / thickness
    surface = math.log(math.expm1(math.log(2) / MeshConfig().thickness))
    with torch.no_grad():
        field.density.grid[0, 0] = surface - field.act_shift + signed / field.voxel_size * 4
    field.update_occupancy()
    return field


def _scene_config(**kwargs) -> MeshConfig:
    return MeshConfig(smooth=0.0, frame="scene", **kwargs)


def test_a_sphere_of_density_gives_a_sphere_mesh_in_place():
    field = _sphere_field()
    mesh = extract_mesh(field, BOUNDED, torch.eye(4), _scene_config())
    vertices = torch.from_numpy(np.asarray(mesh.vertices)).float()
    distances = (vertices - CENTRE).norm(dim=-1)
    assert abs(float(distances.mean()) - RADIUS) < 0.1 * field.voxel_size
    assert float((distances - RADIUS).abs().max()) < 0.5 * field.voxel_size
    assert torch.allclose(vertices.mean(0), CENTRE, atol=0.1 * field.voxel_size)
    assert mesh.is_watertight
    assert mesh.volume == pytest.approx(4 / 3 * math.pi * RADIUS**3, rel=0.02)  # outward faces
    smoothed = extract_mesh(field, BOUNDED, torch.eye(4), MeshConfig(smooth=1.0, frame="scene"))
    assert abs(float(np.linalg.norm(smoothed.vertices - CENTRE.numpy(), axis=1).mean()) - RADIUS) < field.voxel_size


def test_capture_frame_undoes_the_scene_normalisation():
    field = _sphere_field()
    angle = 0.7
    rotation = torch.tensor([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0],
                             [0, 0, 1.0]])
    to_scene = torch.eye(4)
    to_scene[:3, :3] = 0.5 * rotation       # capture -> scene: scale 0.5, rotate, shift
    to_scene[:3, 3] = torch.tensor([0.3, 0.0, -0.2])
    mesh = extract_mesh(field, BOUNDED, to_scene, MeshConfig(smooth=0.0, frame="capture"))
    centre = rotation.T @ (CENTRE - to_scene[:3, 3]) / 0.5
    distances = np.linalg.norm(mesh.vertices - centre.numpy(), axis=1)
    assert abs(distances.mean() - RADIUS / 0.5) < 0.2 * field.voxel_size / 0.5


def test_vertex_colours_are_the_fields_seen_head_on():
    field = _sphere_field()
    mesh = extract_mesh(field, BOUNDED, torch.eye(4), _scene_config())
    points = torch.from_numpy(np.array(mesh.vertices)).float()
    normals = torch.from_numpy(np.array(mesh.vertex_normals)).float()
    assert float(((points - CENTRE) * normals).sum(-1).min()) > 0      # normals point out
    with torch.no_grad():
        expected = field.rgb(points, torch.nn.functional.normalize(-normals, dim=-1))
    colours = np.asarray(mesh.visual.vertex_colors)[:, :3].astype(float) / 255
    assert np.abs(colours - expected.numpy()).max() <= 0.5 / 255 + 1e-6
    assert colours.std() > 0.001                                       # not one flat colour


def test_enclosed_pockets_are_filled():
    """A hollow ball (a field's objects are often shells): one outside surface, unless
    fill_cavities is off, which gives a second, inner one."""
    field = _sphere_field(hollow=0.3)
    filled = extract_mesh(field, BOUNDED, torch.eye(4), _scene_config())
    assert len(filled.split(only_watertight=False)) == 1
    assert filled.volume == pytest.approx(4 / 3 * math.pi * RADIUS**3, rel=0.02)
    shells = extract_mesh(field, BOUNDED, torch.eye(4),
                          _scene_config(fill_cavities=False, largest_component=False))
    assert len(shells.split(only_watertight=False)) == 2
    assert shells.volume == pytest.approx(4 / 3 * math.pi * (RADIUS**3 - 0.3**3), rel=0.03)


def test_material_touching_at_a_corner_is_not_kept_as_a_sliver():
    """Two blocks of material that share only a voxel's corner are one 26-connected
    piece, but two surfaces: the mesh keeps the larger one."""
    field = RadianceField(FieldConfig(), -torch.ones(3), torch.ones(3), num_voxels=32**3)
    raw = torch.full(field.resolution, -20.0)
    raw[8:20, 8:20, 8:20] = 10.0
    raw[20:23, 20:23, 20:23] = 10.0                  # touches the block at one corner
    with torch.no_grad():
        field.density.grid[0, 0] = raw
    field.update_occupancy()
    config = _scene_config(surface_smoothing=0)
    both = extract_mesh(field, BOUNDED, torch.eye(4), dataclasses.replace(config, largest_component=False))
    one = extract_mesh(field, BOUNDED, torch.eye(4), config)
    assert len(both.split(only_watertight=False)) == 2
    assert len(one.split(only_watertight=False)) == 1
    assert one.is_watertight and len(one.faces) < len(both.faces)


def test_pockets_are_what_scipy_calls_holes():
    volume = np.random.default_rng(0).random((40, 30, 20)).astype(np.float32)
    filled = _fill_cavities(volume, 0.3)
    expected = ndimage.binary_fill_holes(volume > 0.3)
    np.testing.assert_array_equal(filled > 0.3, expected)
    assert (filled > 0.3).sum() > (volume > 0.3).sum()       # there were pockets to fill
    np.testing.assert_array_equal(filled[volume > 0.3], volume[volume > 0.3])


def test_surface_smoothing_evens_out_ripples_without_shrinking():
    field = _sphere_field(ripples=1.0)
    radii, roughness = {}, {}
    for iterations in (0, 10):
        mesh = extract_mesh(field, BOUNDED, torch.eye(4), _scene_config(surface_smoothing=iterations))
        radii[iterations] = np.linalg.norm(mesh.vertices - CENTRE.numpy(), axis=1)
        roughness[iterations] = mesh_roughness(mesh)
    assert roughness[0] > 25 and roughness[10] < 0.8 * roughness[0]     # degrees
    assert radii[10].std() < 0.9 * radii[0].std()
    assert abs(radii[10].mean() - radii[0].mean()) < 0.1 * field.voxel_size


def test_a_mask_cuts_the_mesh_and_closes_it():
    field = _sphere_field()
    voxels = torch.zeros(field.resolution, dtype=torch.bool)
    cut = int(np.searchsorted(np.linspace(-1, 1, field.resolution[0]), CENTRE[0].item()))
    voxels[:cut] = True
    mesh = extract_mesh(field, BOUNDED, torch.eye(4), _scene_config(), voxels)
    assert mesh.vertices[:, 0].max() < CENTRE[0].item() + field.voxel_size
    assert mesh.is_watertight
    with pytest.raises(IsrfError, match="empty"):
        extract_mesh(field, BOUNDED, torch.eye(4), _scene_config(), torch.zeros_like(voxels))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_mesh_matches_the_cpu_mesh():
    on_cpu = extract_mesh(_sphere_field(), BOUNDED, torch.eye(4), _scene_config())
    field = _sphere_field().cuda()
    on_gpu = extract_mesh(field, BOUNDED, torch.eye(4), _scene_config())
    assert abs(len(on_gpu.faces) - len(on_cpu.faces)) <= 0.001 * len(on_cpu.faces)
    assert abs(on_gpu.volume - on_cpu.volume) < 1e-3 * on_cpu.volume
    # colours: the CPU field's, looked up at the GPU mesh's vertices
    points = torch.from_numpy(np.array(on_gpu.vertices)).float()
    normals = torch.from_numpy(np.array(on_gpu.vertex_normals)).float()
    with torch.no_grad():
        expected = _sphere_field().rgb(points, torch.nn.functional.normalize(-normals, dim=-1))
    colours = np.asarray(on_gpu.visual.vertex_colors)[:, :3].astype(float) / 255
    assert np.abs(colours - expected.numpy()).max() <= 1.5 / 255


def test_largest_component_and_face_budget():
    field = _sphere_field(extra_ball=((-0.7, 0.7, 0.7), 0.15))
    both = extract_mesh(field, BOUNDED, torch.eye(4), _scene_config(largest_component=False))
    one = extract_mesh(field, BOUNDED, torch.eye(4), _scene_config(largest_component=True))
    assert len(both.split(only_watertight=False)) == 2
    assert len(one.split(only_watertight=False)) == 1
    assert np.linalg.norm(one.vertices - CENTRE.numpy(), axis=1).max() < RADIUS + field.voxel_size
    budget = extract_mesh(field, BOUNDED, torch.eye(4), _scene_config(max_faces=500))
    assert 0 < len(budget.faces) <= 500 and len(one.faces) > 500
    with torch.no_grad():
        field.density.grid.fill_(-field.act_shift - 6)       # faint fog everywhere
    field.update_occupancy()
    with pytest.raises(IsrfError, match="never reaches"):
        extract_mesh(field, BOUNDED, torch.eye(4), _scene_config())


def test_ndc_and_contracted_points_map_back_to_the_world():
    intrinsics = (40.0, 42.0, 64.0, 48.0)
    world = torch.tensor([[0.3, -0.2, -2.0], [-1.0, 0.5, -5.0], [0.0, 0.0, -1.5]])
    origins, dirs = spaces.ndc_rays(torch.zeros_like(world), world, intrinsics)
    ndc = origins + dirs * (1 - 1 / (-world[:, 2:]))     # NDC runs with 1/depth
    assert torch.allclose(field_to_scene(ndc, RaySpace("ndc", (0, 0, 0), 1.0, intrinsics)), world, atol=1e-4)
    far = torch.tensor([[3.0, -1.0, 0.5], [0.2, 0.1, -0.4]])
    space = RaySpace("contracted", (0, 0, 0))
    assert torch.allclose(field_to_scene(spaces.contract(far), space), far, atol=1e-4)


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".glb"])
def test_mesh_files_round_trip(tmp_path, suffix):
    field = _sphere_field()
    mesh = extract_mesh(field, BOUNDED, torch.eye(4), _scene_config(max_faces=2000))
    path = save_mesh(mesh, tmp_path / f"ball{suffix}")
    loaded = trimesh.load(path, force="mesh", process=False)
    assert len(loaded.faces) == len(mesh.faces)
    assert np.allclose(np.sort(loaded.vertices, 0), np.sort(mesh.vertices, 0), atol=1e-5)
    if suffix == ".ply":
        assert np.array_equal(loaded.visual.vertex_colors, mesh.visual.vertex_colors)
    assert not list(tmp_path.glob(".*"))    # no temp file left behind


def test_unknown_mesh_formats_are_refused(tmp_path):
    with pytest.raises(IsrfError, match="unknown mesh format"):
        save_mesh(trimesh.creation.box(), tmp_path / "box.fbx")
