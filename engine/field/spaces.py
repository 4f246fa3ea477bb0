"""The spaces a field can live in, and the maps between world rays and them.

- bounded: world coordinates inside a box.
- ndc: forward-facing scenes. World rays are mapped to the normalised device coordinates
  of the reference camera (NeRF's `ndc_rays`): x, y in about [-1, 1] over the image,
  z from -1 at the near plane to 1 at infinity. The world frame has the cameras looking
  down -Z (the LLFF loader re-centres it so).
- contracted: unbounded scenes. Points inside the unit cube (inf-norm <= 1) are kept;
  outside, x -> (1 + s - s / |x|_inf) * x / |x|_inf with s = `SHELL`, so all of space
  fits in [-1 - s, 1 + s]^3 and the shell is linear in inverse distance.
"""

from __future__ import annotations

import torch

SHELL = 0.2


def ndc_rays(origins: torch.Tensor, dirs: torch.Tensor, intrinsics, near: float = 1.0):
    """World rays [R, 3] -> NDC origins and (unnormalised) directions [R, 3].

    Origins are first moved onto the plane z = -near; in NDC the ray then runs from
    parameter 0 (near plane) to 1 (infinity) along the returned direction.
    """
    fx, fy, width, height = intrinsics
    t = -(near + origins[:, 2]) / dirs[:, 2]
    origins = origins + t[:, None] * dirs
    ox, oy, oz = origins.unbind(-1)
    dx, dy, dz = dirs.unbind(-1)
    sx, sy = -2.0 * fx / width, -2.0 * fy / height
    o = torch.stack([sx * ox / oz, sy * oy / oz, 1.0 + 2.0 * near / oz], -1)
    d = torch.stack([sx * (dx / dz - ox / oz), sy * (dy / dz - oy / oz), -2.0 * near / oz], -1)
    return o, d


def ndc_to_world(points: torch.Tensor, intrinsics, near: float = 1.0) -> torch.Tensor:
    """Inverse of the NDC map for points [P, 3] (z < 1)."""
    fx, fy, width, height = intrinsics
    sx, sy = -2.0 * fx / width, -2.0 * fy / height
    z = 2.0 * near / (points[:, 2] - 1.0)
    return torch.stack([points[:, 0] * z / sx, points[:, 1] * z / sy, z], -1)


def contract(points: torch.Tensor) -> torch.Tensor:
    """Map world points [..., 3] of an unbounded scene into [-1 - SHELL, 1 + SHELL]^3."""
    norm = points.abs().amax(-1, keepdim=True).clamp_min(1e-9)
    outside = (1 + SHELL - SHELL / norm) * points / norm
    return torch.where(norm <= 1, points, outside)


def ray_box(origins: torch.Tensor, dirs: torch.Tensor, box_min: torch.Tensor,
            box_max: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit parameters [R] of rays with a box (exit < entry: the ray misses)."""
    safe = torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0 = (box_min - origins) / safe
    t1 = (box_max - origins) / safe
    return torch.minimum(t0, t1).amax(-1), torch.maximum(t0, t1).amin(-1)


def uncontract(points: torch.Tensor) -> torch.Tensor:
    """Inverse of `contract` for points [..., 3] strictly inside the outer shell."""
    norm = points.abs().amax(-1, keepdim=True).clamp_min(1e-9)
    shell = norm.clamp(1, 1 + SHELL - 1e-6)
    radius = SHELL / (1 + SHELL - shell)          # |x|_inf of the world point
    return torch.where(norm <= 1, points, points / norm * radius)
