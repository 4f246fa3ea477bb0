"""Pinhole cameras in the engine's one convention, and ray generation.

Convention (every loader converts to it):
- `c2w` is camera-to-world, OpenCV style: the camera looks down its +Z axis, +X points
  right in the image and +Y points down.
- Intrinsics per image: fx, fy, cx, cy in pixels. Pixel (col i, row j) covers
  [i, i+1) x [j, j+1); its centre is at (i + 0.5, j + 0.5), so a centred principal
  point is cx = W / 2.
- Optional lens distortion per image: OpenCV radial-tangential (k1, k2, p1, p2), applied
  to normalised image coordinates. Rays are generated through the undistorted pixel, so
  images never need resampling.
- All images of one scene share one size (W, H).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

OPENGL_TO_OPENCV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))
"""Right-multiply an OpenGL/Blender camera-to-world (looks down -Z, +Y up) to get OpenCV."""


@dataclass
class Cameras:
    c2w: torch.Tensor         # [N, 4, 4] float32, OpenCV camera-to-world
    intrinsics: torch.Tensor  # [N, 4] float32: fx, fy, cx, cy (pixels)
    distortion: torch.Tensor  # [N, 4] float32: k1, k2, p1, p2 (zeros: none)
    width: int
    height: int

    def __len__(self) -> int:
        return self.c2w.shape[0]

    def subset(self, ids) -> "Cameras":
        ids = torch.as_tensor(ids, dtype=torch.long)
        return Cameras(self.c2w[ids], self.intrinsics[ids], self.distortion[ids],
                       self.width, self.height)

    def to(self, device) -> "Cameras":
        return Cameras(self.c2w.to(device), self.intrinsics.to(device),
                       self.distortion.to(device), self.width, self.height)

    def rays(self, cam_ids: torch.Tensor, cols: torch.Tensor, rows: torch.Tensor,
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """World-space rays through pixel centres.

        cam_ids, cols, rows: [R] integer tensors. Returns origins [R, 3] and directions
        [R, 3], each direction scaled so its camera-space z component is 1 (a ray
        parameter t is then a depth along the optical axis).
        """
        fx, fy, cx, cy = self.intrinsics[cam_ids].unbind(-1)
        x = (cols.float() + 0.5 - cx) / fx
        y = (rows.float() + 0.5 - cy) / fy
        x, y = undistort(x, y, self.distortion[cam_ids])
        dirs_cam = torch.stack([x, y, torch.ones_like(x)], -1)         # [R, 3]
        c2w = self.c2w[cam_ids]                                          # [R, 4, 4]
        dirs = torch.einsum("rij,rj->ri", c2w[:, :3, :3], dirs_cam)
        return c2w[:, :3, 3].clone(), dirs

    def image_rays(self, cam_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """All rays of one image in row-major order: origins, directions [H*W, 3]."""
        device = self.c2w.device
        rows, cols = torch.meshgrid(torch.arange(self.height, device=device),
                                    torch.arange(self.width, device=device), indexing="ij")
        ids = torch.full((self.height * self.width,), cam_id, device=device)
        return self.rays(ids, cols.reshape(-1), rows.reshape(-1))

    def project(self, cam_id: int, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Project world points [P, 3] into image `cam_id`: pixel coords [P, 2], depth [P]."""
        w2c = torch.linalg.inv(self.c2w[cam_id])
        cam = points @ w2c[:3, :3].T + w2c[:3, 3]
        x, y = cam[:, 0] / cam[:, 2], cam[:, 1] / cam[:, 2]
        x, y = distort(x, y, self.distortion[cam_id].expand(len(points), 4))
        fx, fy, cx, cy = self.intrinsics[cam_id]
        return torch.stack([x * fx + cx, y * fy + cy], -1), cam[:, 2]


def distort(x: torch.Tensor, y: torch.Tensor, coeffs: torch.Tensor):
    """OpenCV radial-tangential distortion of normalised coordinates; coeffs [R, 4]."""
    k1, k2, p1, p2 = coeffs.unbind(-1)
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return xd, yd


def undistort(xd: torch.Tensor, yd: torch.Tensor, coeffs: torch.Tensor, iterations: int = 20):
    """Invert `distort` by fixed-point iteration (as OpenCV's undistortPoints does)."""
    if not bool(coeffs.any()):
        return xd, yd
    k1, k2, p1, p2 = coeffs.unbind(-1)
    x, y = xd, yd
    for _ in range(iterations):
        r2 = x * x + y * y
        radial = 1 + k1 * r2 + k2 * r2 * r2
        dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        x, y = (xd - dx) / radial, (yd - dy) / radial
    return x, y
