"""What a stroke's rays see: the voxels they hit and the features there (`StrokeView`)."""

from __future__ import annotations

import torch

from engine.data.cameras import Cameras
from engine.field.feature_field import FeatureField
from engine.field.radiance_field import RadianceField
from engine.field.renderer import RaySpace, probe_rays
from engine.segment.colour import with_colour
from engine.segment.kmeans import POINTS_PER_CENTRE
from engine.segment.region import StrokeView
from engine.segment.strokes import Stroke, stroke_pixels
from engine.segment.voxels import VoxelDomain

HIT_OPACITY = 0.5
"""Stroke pixels whose ray collects less opacity than this see background: ignored."""
PROBE_CHUNK = 16384  # rays probed at once


class StrokeProbe:
    """Casts a stroke's rays into one scene's fields and reads what they hit."""

    def __init__(self, field: RadianceField, features: FeatureField, space: RaySpace,
                 cameras: Cameras, domain: VoxelDomain, colour_weight: float):
        self.field, self.features, self.space = field, features, space
        self.cameras, self.domain, self.colour_weight = cameras, domain, colour_weight

    def view(self, stroke: Stroke, clusters: int) -> StrokeView:
        """What the stroke's rays see. Features, the costly part of rendering (two thirds
        of the time an 18k-pixel stroke's rays take on fern), only for an even spread of
        at most POINTS_PER_CENTRE x `clusters` of the rays that hit the scene: k-means
        trains on no more (faiss would sample that many itself), and the spread is
        deterministic, so replays give the same centres."""
        device = self.domain.device
        camera = stroke.camera.resolve(self.cameras)
        cols, rows = stroke_pixels(stroke, camera.width, camera.height)
        ids = torch.zeros(len(cols), dtype=torch.long, device=device)
        origins, dirs = camera.rays(ids, torch.from_numpy(cols).to(device),
                                    torch.from_numpy(rows).to(device))
        most = POINTS_PER_CENTRE * clusters
        hits = self.probe(origins, dirs, with_features=len(origins) <= most)  # small: one pass
        seen = torch.nonzero(hits["opacity"] > HIT_OPACITY)[:, 0]                # [P]
        hit_rows = self.domain.rows_at(hits["hit"][seen], self.field)
        if "features" in hits:
            looks = {key: hits[key][seen] for key in ("features", "rgb") if key in hits}
        else:
            spread = seen
            if len(seen) > most:
                spread = seen[torch.linspace(0, len(seen) - 1, most, device=device).long()]
            looks = self.probe(origins[spread], dirs[spread], with_features=True)
        features = with_colour(looks["features"], looks.get("rgb"), self.colour_weight)
        return StrokeView(len(seen), features, hit_rows[hit_rows >= 0].long())

    def probe(self, origins: torch.Tensor, dirs: torch.Tensor, with_features: bool
              ) -> dict[str, torch.Tensor]:
        """probe_rays over rays [R, 3], PROBE_CHUNK rays at a time."""
        features = self.features if with_features else None
        colour = with_features and self.colour_weight > 0
        parts = [probe_rays(self.field, features, self.space, origins[i:i + PROBE_CHUNK],
                            dirs[i:i + PROBE_CHUNK], colour)
                 for i in range(0, len(origins), PROBE_CHUNK)]
        if not parts:   # no rays
            empty = {"opacity": origins.new_zeros(0), "hit": origins.new_zeros(0, 3)}
            if with_features:
                empty["features"] = origins.new_zeros(0, self.features.dims)
            if colour:
                empty["rgb"] = origins.new_zeros(0, 3)
            return empty
        return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
