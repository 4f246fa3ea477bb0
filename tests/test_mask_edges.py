"""2D mask edges snapped to the image (engine/segment/mask_edges.py), on hand-made images
with known answers."""

from __future__ import annotations

import pytest
import torch

from engine.errors import IsrfError
from engine.segment.mask_edges import snap_to_image

SIZE = 40
EDGE = 20      # the image's colour edge: columns < EDGE are the object
THRESHOLD = 0.45


def _two_colour_image() -> torch.Tensor:
    """[SIZE, SIZE, 3]: blue left of column EDGE, orange from it on."""
    image = torch.empty(SIZE, SIZE, 3)
    image[:, :EDGE] = torch.tensor([0.2, 0.3, 0.8])
    image[:, EDGE:] = torch.tensor([0.8, 0.6, 0.2])
    return image


def _soft_share(centre: float, width: float = 1.5) -> torch.Tensor:
    """[SIZE, SIZE]: a share that falls from 1 to 0 around column `centre` (a soft surface
    whose rim lies off the true edge)."""
    columns = torch.arange(SIZE, dtype=torch.float32) + 0.5
    return torch.sigmoid((centre - columns) / width).expand(SIZE, SIZE).clone()


@pytest.mark.parametrize("rim", [EDGE - 2.5, EDGE + 2.5])
def test_a_rim_off_the_edge_moves_onto_it(rim):
    image, share = _two_colour_image(), _soft_share(rim)
    truth = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    truth[:, :EDGE] = True
    assert not torch.equal(share > THRESHOLD, truth)         # 2-3 columns off as rendered
    snapped = snap_to_image(share, image, radius=6, eps=1e-4)
    assert torch.equal(snapped > THRESHOLD, truth)


def test_flat_colour_keeps_the_shares_shape():
    """Without a colour edge the filter has nothing to follow: a mask inside a flat patch
    stays where it was (a local mean of the share, thresholded, keeps a straight edge)."""
    image = torch.full((SIZE, SIZE, 3), 0.5)
    share = _soft_share(EDGE + 0.5, width=0.5)
    snapped = snap_to_image(share, image, radius=6, eps=1e-4)
    assert torch.equal(snapped > THRESHOLD, share > THRESHOLD)


def test_radius_zero_is_off_and_sizes_must_match():
    share = _soft_share(EDGE)
    assert snap_to_image(share, _two_colour_image(), radius=0, eps=1e-4) is share
    with pytest.raises(IsrfError, match="guide image is \\(40, 20\\), the mask \\(40, 40\\)"):
        snap_to_image(share, _two_colour_image()[:, :20], radius=6, eps=1e-4)
    with pytest.raises(IsrfError, match="a guide image is needed when mask_edge_radius > 0"):
        snap_to_image(share, None, radius=6, eps=1e-4)
