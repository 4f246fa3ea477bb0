"""The radiance field: a dense density grid and a VM colour-feature grid + small MLP.

DVGO-style density: raw grid values pass through softplus with a shift chosen so that
every voxel starts almost transparent (`alpha_init`). The opacity of a ray segment is
alpha = 1 - exp(-softplus(raw + shift) * interval), with the interval measured in voxels
of the *final* grid, so densities keep their meaning when the grid is upscaled.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from engine.config import FieldConfig
from engine.field.environment import Environment
from engine.field.grids import DenseGrid, VMGrid


RGB_PADDING = 0.001


def grid_resolution(box_min: torch.Tensor, box_max: torch.Tensor, num_voxels: int) -> list[int]:
    """Per-axis vertex counts giving about `num_voxels` cubic voxels in the box."""
    extent = (box_max - box_min).double()
    voxel = (extent.prod() / num_voxels) ** (1 / 3)
    return [max(2, int(round(float(e / voxel)))) for e in extent]


def positional_encoding(x: torch.Tensor, freqs: int) -> torch.Tensor:
    """[M, D] -> [M, D * (1 + 2 * freqs)]: x, sin(2^k x), cos(2^k x)."""
    if freqs == 0:
        return x
    scales = 2.0 ** torch.arange(freqs, device=x.device, dtype=x.dtype)
    angles = (x[:, :, None] * scales).flatten(1)
    return torch.cat([x, angles.sin(), angles.cos()], -1)


class RadianceField(nn.Module):
    def __init__(self, config: FieldConfig, box_min: torch.Tensor, box_max: torch.Tensor,
                 num_voxels: int, final_voxel_size: float | None = None,
                 environment_width: int | None = None):
        """environment_width: learn the colour of what rays see beyond the box, starting
        at this many texels around (`Environment`; scenes whose data.background is
        "environment"); None: a constant background."""
        super().__init__()
        self.config = config
        resolution = grid_resolution(box_min, box_max, num_voxels)
        self.register_buffer("box_min", box_min.float().clone())
        self.register_buffer("box_max", box_max.float().clone())
        if final_voxel_size is None:
            final_voxel_size = float(((box_max - box_min).prod() / config.num_voxels) ** (1 / 3))
        self.register_buffer("final_voxel_size", torch.tensor(float(final_voxel_size)))
        self.density = DenseGrid(1, resolution)
        self.color = VMGrid(config.color_features, config.color_rank, resolution)
        view_dims = 3 * (1 + 2 * config.viewdir_freqs)
        self.mlp = nn.Sequential(
            nn.Linear(config.color_features + view_dims, config.mlp_width), nn.ReLU(inplace=True),
            nn.Linear(config.mlp_width, config.mlp_width), nn.ReLU(inplace=True),
            nn.Linear(config.mlp_width, 3))
        self.environment = Environment(environment_width) if environment_width else None
        self.register_buffer("occupancy", torch.ones(resolution, dtype=torch.bool))
        # softplus(shift) * 1 voxel = -log(1 - alpha_init)
        self.act_shift = math.log(math.expm1(-math.log1p(-config.alpha_init)))

    # ----- geometry of the grid -------------------------------------------------
    @property
    def resolution(self) -> list[int]:
        return self.density.resolution

    @property
    def voxel_size(self) -> float:
        """Mean edge length of the current voxels (space units)."""
        extent = self.box_max - self.box_min
        cells = torch.tensor(self.resolution, device=extent.device) - 1
        return float((extent / cells).mean())

    def normalize(self, points: torch.Tensor) -> torch.Tensor:
        """Space points [M, 3] -> [-1, 1] grid coordinates."""
        return (points - self.box_min) / (self.box_max - self.box_min) * 2 - 1

    def occupied(self, points: torch.Tensor, grid: torch.Tensor | None = None) -> torch.Tensor:
        """[M] bool: inside the box and in an occupied voxel (the voxel nearest each point).

        grid: a bool [X, Y, Z] grid to look up instead of the occupancy (a segment's mask)."""
        return self._voxel_test(self._grid_coords(points).unbind(-1),
                                self.occupancy if grid is None else grid)

    def occupied_along(self, origins: torch.Tensor, unit: torch.Tensor, t: torch.Tensor,
                       grid: torch.Tensor | None = None) -> torch.Tensor:
        """`occupied` for the points origins + t * unit of straight rays (origins, unit
        [R, 3], t [R, S]) -> [R, S] bool, without making the points: a render tests every
        sample it marches, and most are dropped here."""
        edges = (self.box_max - self.box_min) / (origins.new_tensor(self.resolution) - 1)
        start, step = (origins - self.box_min) / edges, unit / edges          # [R, 3] voxels
        coords = [torch.addcmul(start[:, axis, None], step[:, axis, None], t) for axis in range(3)]
        # No inside test: the renderer's t lie within the ray's span in the box (ray_box),
        # and the clamp takes rounding at its faces to the voxel there.
        return self._voxel_test(coords, self.occupancy if grid is None else grid, inside=False)

    @staticmethod
    def _voxel_test(coords: list[torch.Tensor], grid: torch.Tensor, inside: bool = True
                    ) -> torch.Tensor:
        """Grid index coordinates, one tensor per axis (any shape) -> bool of that shape:
        its nearest voxel set (and, with `inside`, within the grid). One flat gather, its
        index made in float (exact below 2^24 voxels) and turned to integers once."""
        within = torch.ones_like(coords[0], dtype=torch.bool) if inside else None
        flat = torch.zeros_like(coords[0])
        for coord, size in zip(coords, grid.shape):
            if inside:
                within &= (coord >= 0) & (coord <= size - 1)
            flat = flat * size + (coord + 0.5).floor_().clamp_(0, size - 1)
        hit = grid.reshape(-1).index_select(0, flat.long().reshape(-1)).reshape(flat.shape)
        return hit & within if inside else hit

    def _grid_coords(self, points: torch.Tensor) -> torch.Tensor:
        """Space points [M, 3] -> continuous grid index coordinates [M, 3] (0 .. size - 1)."""
        size = torch.tensor(self.resolution, device=points.device, dtype=points.dtype)
        return (points - self.box_min) * ((size - 1) / (self.box_max - self.box_min))

    # ----- quantities -----------------------------------------------------------
    def sigma(self, points: torch.Tensor) -> torch.Tensor:
        """Density [M] per final-grid voxel length at space points [M, 3]."""
        raw = self.density(self.normalize(points))[:, 0]
        return F.softplus(raw + self.act_shift)

    def rgb(self, points: torch.Tensor, ray_dirs: torch.Tensor,
            ray_index: torch.Tensor | None = None) -> torch.Tensor:
        """Colour [M, 3] in [0, 1] at points [M, 3] seen along unit directions.

        ray_dirs: [R, 3], one per ray; ray_index [M] says which ray each point is on
        (None: one direction per point, R = M).
        """
        features = self.color(self.normalize(points))                      # [M, C]
        # The view direction is constant along a ray: its share of the first layer is
        # computed once per ray, not once per sample.
        first = self.mlp[0]
        views = positional_encoding(ray_dirs, self.config.viewdir_freqs)    # [R, V]
        view_term = F.linear(views, first.weight[:, features.shape[1]:], first.bias)
        if ray_index is not None:
            view_term = view_term.index_select(0, ray_index)
        hidden = F.linear(features, first.weight[:, :features.shape[1]]) + view_term
        logits = self.mlp[1:](hidden)
        # A slightly widened sigmoid (as mip-NeRF's): 0 and 1 are reached at finite logits, so
        # the colour never saturates where its gradient vanishes (early on, when density is
        # still low, a white background pushes colours down hard).
        return torch.sigmoid(logits) * (1 + 2 * RGB_PADDING) - RGB_PADDING

    @torch.no_grad()
    def voxel_alpha(self) -> torch.Tensor:
        """[X, Y, Z] opacity of one ray step through each voxel of the current grid."""
        sigma = F.softplus(self.density.grid[0, 0] + self.act_shift)
        interval = self.config.stepsize * self.voxel_size / float(self.final_voxel_size)
        return 1 - torch.exp(-sigma * interval)

    # ----- training-time maintenance -------------------------------------------
    @torch.no_grad()
    def update_occupancy(self) -> float:
        """Mark voxels that are (or touch) non-empty; returns the occupied fraction."""
        solid = (self.voxel_alpha() > self.config.occupancy_threshold).float()
        dilated = F.max_pool3d(solid[None, None], kernel_size=3, stride=1, padding=1)[0, 0]
        self.occupancy = dilated > 0
        return float(self.occupancy.float().mean())

    @torch.no_grad()
    def occupied_box(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """World box of the occupied voxels padded by `box_padding` voxels (None if empty)."""
        index = torch.nonzero(self.voxel_alpha() > self.config.occupancy_threshold)
        if len(index) == 0:
            return None
        size = torch.tensor(self.resolution, device=index.device) - 1
        step = (self.box_max - self.box_min) / size
        pad = self.config.box_padding + 1
        low = self.box_min + (index.amin(0) - pad).clamp_min(0) * step
        high = self.box_min + torch.minimum(index.amax(0) + pad, size) * step
        return low, high

    @torch.no_grad()
    def rescale(self, num_voxels: int, tighten: bool) -> None:
        """Resample all grids at `num_voxels`, optionally onto the tightened box."""
        old_box = (self.box_min.clone(), self.box_max.clone())
        new_box = self.occupied_box() if tighten else None
        new_box = new_box or old_box
        resolution = grid_resolution(new_box[0], new_box[1], num_voxels)
        self.density.resample(old_box, new_box, resolution)
        self.color.resample(old_box, new_box, resolution)
        self.box_min.copy_(new_box[0])
        self.box_max.copy_(new_box[1])
        self.occupancy = torch.ones(resolution, dtype=torch.bool, device=self.box_min.device)
        self.update_occupancy()

    def parameter_groups(self, lr_density: float, lr_color_grid: float, lr_mlp: float,
                         lr_environment: float) -> list[dict]:
        return [
            {"params": self.density.parameters(), "lr": lr_density, "name": "density"},
            {"params": list(self.color.planes) + list(self.color.lines), "lr": lr_color_grid,
             "name": "color_grid"},
            {"params": list(self.color.basis.parameters()) + list(self.mlp.parameters()),
             "lr": lr_mlp, "name": "mlp"},
        ] + ([{"params": self.environment.parameters(), "lr": lr_environment,
               "name": "environment"}] if self.environment is not None else [])

    # ----- persistence ----------------------------------------------------------
    @classmethod
    def from_state_dict(cls, config: FieldConfig, state: dict) -> "RadianceField":
        """Rebuild a field (at the saved box and resolution) from `state_dict()`."""
        resolution = list(state["density.grid"].shape[2:])
        field = cls(config, state["box_min"], state["box_max"], num_voxels=8**3,
                    final_voxel_size=float(state["final_voxel_size"]),
                    environment_width=(state["environment.texture"].shape[-1]
                                       if "environment.texture" in state else None))
        field.density = DenseGrid(1, resolution)
        field.color = VMGrid(config.color_features, config.color_rank, resolution)
        field.occupancy = torch.ones(resolution, dtype=torch.bool)
        field.load_state_dict(state)
        return field
