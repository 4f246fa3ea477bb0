"""A segment's mesh: marching cubes on its masked opacity, coloured by the radiance field.

1. The opacity of `thickness` final-grid voxels of material, 1 - exp(-sigma * thickness),
   on the field's grid, set to 0 outside the segment's voxels (cropped to the segment's box, so small objects in big
   grids are cheap).
2. Optional Gaussian smoothing of the segment's voxel mask (so cuts through material are
   smooth rather than staircases; the field's own surfaces are already smooth, and
   smoothing a thin soft shell would erase it), removal of every connected piece but
   the largest (of the material, and again of the mesh), and filling of the empty
   pockets the material encloses (no hidden shells inside the mesh).
3. scikit-image's marching cubes at `level`, Taubin smoothing of the mesh (trimesh: the
   voxel-scale ripples of a field's surfaces even out, the mesh does not shrink), then
   quadric decimation to the face budget.
4. Each vertex takes the colour the field gives it seen head-on (view direction = minus
   its normal; forward-facing scenes: seen from the reference camera).
5. Vertices are mapped from the field's space to the scene frame (NDC back to world,
   contracted space back to world), then, for `frame = "capture"`, to the input poses'
   own world frame.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
import trimesh
from scipy import ndimage
from skimage.measure import marching_cubes

from engine.config import MeshConfig
from engine.errors import IsrfError
from engine.field import spaces
from engine.field.radiance_field import RadianceField
from engine.field.renderer import RaySpace

CHUNK = 1 << 16


@torch.no_grad()
def material_opacity(field: RadianceField, thickness: float) -> torch.Tensor:
    """[X, Y, Z] opacity of `thickness` final-grid voxels of material at each grid vertex."""
    sigma = F.softplus(field.density.grid[0, 0] + field.act_shift)
    return 1 - torch.exp(-sigma * thickness)


def _crop(mask: np.ndarray, pad: int) -> tuple[slice, ...]:
    """The box of the mask's True voxels, widened by `pad` (within the grid)."""
    where = np.nonzero(mask)
    return tuple(slice(max(int(w.min()) - pad, 0), min(int(w.max()) + pad + 1, n))
                 for w, n in zip(where, mask.shape))


def _keep_largest(volume: np.ndarray, level: float) -> np.ndarray:
    labels, count = ndimage.label(volume > level, structure=np.ones((3, 3, 3)))
    if count <= 1:
        return volume
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return np.where(labels == sizes.argmax(), volume, 0).astype(volume.dtype)


@torch.no_grad()
def extract_mesh(field: RadianceField, space: RaySpace, to_scene: torch.Tensor,
                 config: MeshConfig, voxels: torch.Tensor | None = None) -> trimesh.Trimesh:
    """The mesh of the field's material inside `voxels` (bool grid [X, Y, Z]; None: all),
    in world coordinates (see the module docstring), with per-vertex colours."""
    opacity = material_opacity(field, config.thickness)
    mask = (field.occupancy if voxels is None else voxels & field.occupancy).cpu().numpy()
    if not mask.any():
        raise IsrfError("the segment is empty: nothing to mesh")
    pad = 2 + int(np.ceil(3 * config.smooth))
    box = _crop(mask, pad)
    keep = mask[box].astype(np.float32)
    if config.smooth > 0:   # soften the segment's cut, not the field's own surfaces
        keep = ndimage.gaussian_filter(keep, config.smooth)
    volume = (opacity.cpu().numpy()[box] * keep).astype(np.float32)
    if config.largest_component:
        volume = _keep_largest(volume, config.level)
    if config.fill_cavities:
        volume = _fill_cavities(volume, config.level)
    if volume.max() <= config.level:
        raise IsrfError(f"the segment's opacity never reaches mesh.level {config.level}: "
                        "nothing to mesh (lower the level)")
    volume = np.pad(volume, 1)       # closes surfaces cut by the crop or the grid's edge
    grid_vertices, faces, _, _ = marching_cubes(volume, config.level)
    offset = np.array([s.start for s in box], np.float32) - 1
    mesh = trimesh.Trimesh(grid_vertices + offset, faces[:, ::-1], process=False)
    if config.largest_component:
        mesh = _largest_piece(mesh)
    if config.surface_smoothing:   # Taubin's filter: evens out ripples without shrinking
        trimesh.smoothing.filter_taubin(mesh, iterations=config.surface_smoothing)
    if config.max_faces and len(mesh.faces) > config.max_faces:
        mesh = mesh.simplify_quadric_decimation(face_count=config.max_faces)
    device = field.box_min.device
    size = torch.tensor(field.resolution, device=device, dtype=torch.float32)
    grid_points = torch.from_numpy(np.asarray(mesh.vertices, np.float32)).to(device)
    points = field.box_min + grid_points / (size - 1) * (field.box_max - field.box_min)
    # normals of the mesh in the field's space (grid axes may be scaled unevenly)
    in_field = trimesh.Trimesh(points.cpu().numpy(), np.asarray(mesh.faces), process=False)
    normals = torch.from_numpy(np.asarray(in_field.vertex_normals, np.float32)).to(device)
    world = field_to_scene(points, space)
    view = -normals if space.kind != "ndc" else F.normalize(world, dim=-1)
    colours = vertex_colours(field, points, view)
    if config.frame == "capture":
        world = scene_to_capture(world, to_scene)
    return trimesh.Trimesh(world.cpu().numpy(), np.asarray(mesh.faces),
                           vertex_colors=colours, process=False)


def _largest_piece(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """The mesh's largest edge-connected piece. Material that touches the rest only at a
    voxel's corner or edge passes _keep_largest (26-connected) but comes out of marching
    cubes as a separate sliver."""
    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency, node_count=len(mesh.faces))
    largest = mesh.faces[labels == np.bincount(labels).argmax()]
    kept = trimesh.Trimesh(mesh.vertices, largest, process=False)
    kept.remove_unreferenced_vertices()
    return kept


def _fill_cavities(volume: np.ndarray, level: float) -> np.ndarray:
    """The volume with every empty pocket that material encloses set to 1 (opaque).
    Pockets are the empty regions (face-connected) that touch no side of the volume: the
    same as scipy's binary_fill_holes, 2-3x faster at 256^3 (one labelling pass rather
    than a dilation repeated until nothing changes)."""
    empty = volume <= level
    labels, count = ndimage.label(empty)
    reaches_side = np.zeros(count + 1, bool)
    for side in (labels[[0, -1]], labels[:, [0, -1]], labels[:, :, [0, -1]]):
        reaches_side[side.ravel()] = True
    pocket = empty & ~reaches_side[labels]
    return np.where(pocket, np.float32(1), volume)


def vertex_colours(field: RadianceField, points: torch.Tensor, view_dirs: torch.Tensor
                   ) -> np.ndarray:
    """RGBA uint8 [V, 4] of the field at field-space points [V, 3] seen along view_dirs."""
    parts = []
    for start in range(0, len(points), CHUNK):
        dirs = F.normalize(view_dirs[start:start + CHUNK], dim=-1)
        parts.append(field.rgb(points[start:start + CHUNK], dirs))
    rgb = torch.cat(parts).clamp(0, 1) if parts else torch.zeros(0, 3)
    alpha = torch.ones_like(rgb[:, :1])
    return (torch.cat([rgb, alpha], 1) * 255).round().byte().cpu().numpy()


def field_to_scene(points: torch.Tensor, space: RaySpace) -> torch.Tensor:
    """Field-space points [P, 3] -> the scene frame the cameras are expressed in."""
    if space.kind == "ndc":
        z = points[:, 2].clamp(max=1 - 1e-3)      # NDC z = 1 is infinitely far
        return spaces.ndc_to_world(torch.stack([points[:, 0], points[:, 1], z], -1),
                                   space.ndc_intrinsics)
    if space.kind == "contracted":
        return spaces.uncontract(points)
    return points


def scene_to_capture(points: torch.Tensor, to_scene: torch.Tensor) -> torch.Tensor:
    """Scene-frame points [P, 3] -> the input poses' world frame (inverse of to_scene)."""
    back = torch.linalg.inv(to_scene.double().to(points.device))
    return (points.double() @ back[:3, :3].T + back[:3, 3]).float()
