"""The learnt environment (engine/field/environment.py): its directions, its seam, its
coarse-to-fine upscale, and its place in a field's checkpoint."""

from __future__ import annotations

import math

import torch

from engine.config import FieldConfig
from engine.field.environment import Environment
from engine.field.radiance_field import RadianceField


def _direction(azimuth: float, elevation: float) -> torch.Tensor:
    return torch.tensor([[math.cos(elevation) * math.cos(azimuth),
                          math.cos(elevation) * math.sin(azimuth), math.sin(elevation)]])


def test_directions_read_their_texels():
    env = Environment(16)                                    # 8 rows x 16 columns
    with torch.no_grad():
        env.texture.fill_(-4.0)
        env.texture[0, 0, 0, :] = 4.0                        # red: the top row (up)
        env.texture[0, 1, :, 8] = 4.0                        # green: the column at azimuth 0+
    up = env(torch.tensor([[0.0, 0.0, 1.0]]))[0]
    assert up[0] > 0.9 and up[2] < 0.1
    # azimuth 0 lies between columns 7 and 8; a little towards +y reads column 8's centre
    towards_x = env(_direction(2 * math.pi / 16 * 0.5, 0.0))[0]
    assert towards_x[1] > 0.9 and towards_x[0] < 0.1
    opposite = env(_direction(math.pi * 0.9, 0.0))[0]
    assert opposite[1] < 0.1


def test_the_seam_behind_azimuth_pi_is_continuous():
    env = Environment(32)
    with torch.no_grad():
        env.texture.fill_(0.0)
        env.texture[..., 0] = 4.0                            # first column bright,
        env.texture[..., -1] = -4.0                          # last column dark
    just_below = env(_direction(math.pi - 1e-4, 0.2))
    just_above = env(_direction(-math.pi + 1e-4, 0.2))
    # both sides of the seam are the mean of the two edge columns, as one texel gap would be
    assert torch.allclose(just_below, just_above, atol=0.01)  # 8 logits a texel apart
    assert torch.allclose(just_below, torch.full((1, 3), 0.5), atol=0.02)


def test_upscale_keeps_a_smooth_environment():
    env = Environment(16)
    dirs = torch.nn.functional.normalize(torch.randn(500, 3), dim=-1)
    # smooth around the seam (periodic in azimuth) and flat at the poles
    elevation = (torch.arange(8) + 0.5) / 8 * math.pi - math.pi / 2
    azimuth = (torch.arange(16) + 0.5) / 16 * 2 * math.pi - math.pi
    rows, cols = torch.meshgrid(elevation, azimuth, indexing="ij")
    with torch.no_grad():
        env.texture[0] = torch.stack([torch.cos(rows), 0.5 * torch.sin(cols),
                                      torch.cos(rows) * torch.cos(cols)])
    before = env(dirs)
    env.upscale(64)
    assert env.texture.shape == (1, 3, 32, 64)
    assert isinstance(env.texture, torch.nn.Parameter)
    assert (env(dirs) - before).abs().max() < 0.05


def test_a_field_with_an_environment_survives_its_checkpoint():
    config = FieldConfig()
    field = RadianceField(config, -torch.ones(3), torch.ones(3), 16**3, environment_width=32)
    with torch.no_grad():
        field.environment.texture.normal_()
    restored = RadianceField.from_state_dict(config, field.state_dict())
    dirs = torch.nn.functional.normalize(torch.randn(100, 3), dim=-1)
    assert restored.environment.width == 32
    assert torch.equal(restored.environment(dirs), field.environment(dirs))
    plain = RadianceField.from_state_dict(config, RadianceField(
        config, -torch.ones(3), torch.ones(3), 16**3).state_dict())
    assert plain.environment is None
