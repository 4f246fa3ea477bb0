"""2D masks that follow the image (engine/segment/mask_edges.py): edges snapped to it and
pixels added by colour, on hand-made images with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.errors import IsrfError
from engine.segment.mask_edges import add_by_colour, in_pixels, snap_to_image

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


def _textured_two_colour_image() -> torch.Tensor:
    """The two-colour image with a little fixed noise (photographs are never flat)."""
    generator = torch.Generator().manual_seed(0)
    noise = 0.03 * torch.randn(SIZE, SIZE, 3, generator=generator)
    return (_two_colour_image() + noise).clamp(0, 1)


def test_missed_pixels_of_the_objects_colour_are_added_and_nothing_else():
    """The mask stops 3 columns short of the object's edge (what the voxels missed); the
    pixels up to the colour edge come back, the other colour's pixels stay out."""
    image = _textured_two_colour_image()
    truth = np.zeros((SIZE, SIZE), bool)
    truth[:, :EDGE] = True
    short = np.zeros((SIZE, SIZE), bool)
    short[:, :EDGE - 3] = True
    assert np.array_equal(add_by_colour(short, image, band=5), truth)
    # Out of reach: a band of 2 px adds the two columns next to the mask, no more.
    reach = add_by_colour(short, image, band=2)
    assert np.array_equal(reach, short | (np.arange(SIZE) < EDGE - 1)[None])


def test_colour_only_adds_pixels():
    """A mask that took a strip of the other colour keeps it: red strokes and the voxels
    decide what is removed, not a global colour model (it would drop an object's pixels
    that share the backdrop's colour)."""
    image = _textured_two_colour_image()
    wide = np.zeros((SIZE, SIZE), bool)
    wide[:, :EDGE + 3] = True
    grown = add_by_colour(wide, image, band=5)
    assert np.array_equal(grown, wide)


def test_colour_step_is_deterministic_and_guards_its_inputs():
    image = _textured_two_colour_image()
    short = np.zeros((SIZE, SIZE), bool)
    short[5:30, 2:EDGE - 2] = True
    first = add_by_colour(short, image, band=5)
    assert np.array_equal(first, add_by_colour(short, image, band=5))
    assert add_by_colour(short, image, band=0) is short
    tiny = np.zeros((SIZE, SIZE), bool)
    tiny[3, 3] = True
    assert np.array_equal(add_by_colour(tiny, image, band=5), tiny)      # too few to model
    full = np.ones((SIZE, SIZE), bool)
    assert np.array_equal(add_by_colour(full, image, band=5), full)
    with pytest.raises(IsrfError, match="a guide image is needed when mask_grabcut_band > 0"):
        add_by_colour(short, None, band=5)
    with pytest.raises(IsrfError, match="guide image is \\(40, 20\\), the mask \\(40, 40\\)"):
        add_by_colour(short, image[:, :20], band=5)


def test_lengths_are_fractions_of_the_long_side():
    """The photo assists' radius and band scale with the image: 6 and 5 px of the default
    scene's 200-px views, twice that at 400 px; never rounded to 0 unless off."""
    assert in_pixels(0.03, (200, 200)) == 6 and in_pixels(0.025, (200, 150)) == 5
    assert in_pixels(0.03, (300, 400)) == 12 and in_pixels(0.025, (400, 300, 3)) == 10
    assert in_pixels(0.001, (48, 48)) == 1 and in_pixels(0.0, (4000, 4000)) == 0
