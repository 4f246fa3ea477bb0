"""The distortion loss against its definition, and the sample positions it reads."""

from __future__ import annotations

import pytest
import torch

from engine.config import FieldConfig
from engine.field.radiance_field import RadianceField
from engine.field.renderer import RaySpace, Samples, sample_rays
from engine.train.losses import distortion


def _random_samples(R: int, S: int, keep: float, seed: int = 0) -> tuple[Samples, torch.Tensor]:
    """R rays of S slots, a random share of them kept; positions rise along each ray."""
    g = torch.Generator().manual_seed(seed)
    interval = torch.rand(R, S, generator=g) + 0.1
    position = interval.cumsum(1) - interval
    flat = torch.nonzero(torch.rand(R * S, generator=g) < keep)[:, 0]
    weights = torch.rand(len(flat), generator=g) / S
    samples = Samples(torch.zeros(len(flat), 3), flat // S, flat, interval.reshape(-1)[flat],
                      position.reshape(-1)[flat], position.reshape(-1)[flat], (R, S))
    return samples, weights


def _by_definition(samples: Samples, weights: torch.Tensor) -> torch.Tensor:
    R, _ = samples.shape
    total = torch.zeros(())
    for r in range(R):
        on = samples.ray_index == r
        w, s, d = weights[on], samples.position[on], samples.interval[on]
        total = total + (w[:, None] * w[None] * (s[:, None] - s[None]).abs()).sum()
        total = total + (w.square() * d).sum() / 3
    return total / R


def test_distortion_equals_its_definition():
    samples, weights = _random_samples(R=7, S=40, keep=0.6)
    assert torch.allclose(distortion(samples, weights), _by_definition(samples, weights),
                          rtol=1e-5)


def test_distortion_is_smaller_for_a_thin_layer_of_the_same_weight():
    """What it is for: the same opacity in 2 neighbouring samples costs less than spread
    over 10, and less again than split between two separate surfaces."""
    S = 30
    flat = torch.arange(S)
    position = torch.arange(S, dtype=torch.float32)
    samples = Samples(torch.zeros(S, 3), torch.zeros(S, dtype=torch.long), flat,
                      torch.ones(S), position, position, (1, S))

    def cost(where: list[int]) -> float:
        weights = torch.zeros(S)
        weights[where] = 0.9 / len(where)
        return float(distortion(samples, weights))

    assert cost([10, 11]) < cost(list(range(10, 20))) < cost([5, 25])


def test_a_step_along_the_distortion_gradient_lowers_it():
    """One gradient step on the weights lowers the loss (the loss is differentiable
    through the running sums)."""
    samples, weights = _random_samples(R=3, S=20, keep=1.0, seed=1)
    weights.requires_grad_(True)
    before = distortion(samples, weights)
    before.backward()
    after = distortion(samples, (weights - 1e-3 * weights.grad).clamp_min(0))
    assert after < before


@pytest.mark.parametrize("kind", ["bounded", "contracted"])
def test_sample_positions_advance_by_their_intervals(kind):
    """Positions along a ray, in final-grid voxels, grow by each sample's interval."""
    field = RadianceField(FieldConfig(), torch.full((3,), -1.0), torch.full((3,), 1.0), 32 ** 3)
    space = RaySpace(kind, (1.0, 1.0, 1.0))
    origins = torch.tensor([[0.0, 0.0, -3.0], [0.5, -0.2, -3.0]])
    dirs = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.1, 1.0]])
    samples = sample_rays(field, space, origins, dirs, jitter=False)
    assert len(samples.position) > 10
    for r in range(2):
        on = samples.ray_index == r
        steps = samples.position[on].diff()
        assert torch.allclose(steps, samples.interval[on][:-1], rtol=1e-3)
