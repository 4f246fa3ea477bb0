"""2D features: backbones, weights, PCA, feature maps and the on-disk cache."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import engine.features.extract as extract_module
from engine.config import FeaturesConfig, load_config
from engine.data import load_scene
from engine.errors import Cancelled, IsrfError
from engine.features.backbones import BACKBONES, backbone_from_model, create_architecture
from engine.features.extract import backbone_input_size, extract_features
from engine.features.guided import guided_map_size, guided_radius_pixels, guided_upsample
from engine.features.maps import FeatureMaps
from engine.features.pca import StreamingPca, project
from engine.features.weights import load_backbone, packaged_efficientnet_file, resolve_weights
from synthetic import make_sphere_scene
from locations import REPO

CPU = torch.device("cpu")
FAST = dict(input_size=64, scales=[1.0], flip=False, dims=16)


@pytest.fixture(scope="module")
def spheres(tmp_path_factory):
    return make_sphere_scene(tmp_path_factory.mktemp("spheres"), views=12, size=48)


# ----- backbones ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["dino_vitb8", "dino_vits8", "dinov2_vits14"])
def test_timm_backbones_any_size_shapes_and_strides(name):
    spec = BACKBONES[name]
    backbone = backbone_from_model(name, create_architecture(name))  # random weights
    for rows, cols in [(4, 6), (5, 3)]:
        images = torch.rand(2, 3, rows * spec.multiple, cols * spec.multiple)
        out = backbone(images)
        assert out.shape == (2, spec.channels, rows * spec.multiple // spec.stride,
                             cols * spec.multiple // spec.stride)
        assert torch.isfinite(out).all()


def test_backbone_rejects_a_size_off_its_multiple():
    backbone = backbone_from_model("dino_vits8", create_architecture("dino_vits8"))
    with pytest.raises(ValueError, match="not a multiple of 8"):
        backbone(torch.rand(1, 3, 64, 60))


def test_efficientnet_loads_the_packaged_imagenet_weights():
    backbone = load_backbone("efficientnet_lite0", resolve_weights("efficientnet_lite0"))
    packaged = torch.load(packaged_efficientnet_file(), map_location="cpu", weights_only=True)
    assert torch.equal(backbone.model.conv_stem.weight, packaged["_conv_stem.weight"])
    assert torch.equal(backbone.model.blocks[5][0].conv_pw.weight,
                       packaged["_blocks.11._expand_conv.weight"])
    out = backbone(torch.rand(3, 3, 64, 96))
    spec = BACKBONES["efficientnet_lite0"]
    assert out.shape == (3, spec.channels, 64 // spec.stride, 96 // spec.stride)
    # Each of the three stages is L2-normalised before concatenation.
    norms = [part.norm(dim=1) for part in out.split([40, 112, 320], dim=1)]
    assert all(torch.all(n <= 1 + 1e-4) and n.mean() > 0.9 for n in norms)


def test_vit_weights_from_a_file_and_from_the_hub_cache(tmp_path, monkeypatch):
    from safetensors.torch import save_file
    import huggingface_hub.constants

    reference = create_architecture("dino_vits8")
    state = {k: v.contiguous() for k, v in reference.state_dict().items()}
    weights = tmp_path / "dino_vits8.safetensors"
    save_file(state, str(weights))
    loaded = load_backbone("dino_vits8", resolve_weights("dino_vits8", weights))
    assert torch.equal(loaded.model.patch_embed.proj.weight, state["patch_embed.proj.weight"])

    # The hub cache layout huggingface_hub uses: models--org--name/snapshots/<rev>/<file>.
    cache = tmp_path / "hub"
    repo = cache / "models--timm--vit_small_patch8_224.dino"
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    os.link(weights, repo / "snapshots" / "abc123" / "model.safetensors")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    assert resolve_weights("dino_vits8") == repo / "snapshots" / "abc123" / "model.safetensors"


def test_missing_vit_weights_give_one_clear_error(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(IsrfError) as error:
        resolve_weights("dino_vitb8", download=False)
    message = str(error.value)
    assert "dino_vitb8" in message and "timm/vit_base_patch8_224.dino" in message
    assert "model.safetensors" in message and "--weights" in message
    assert str(tmp_path / "empty") in message


def test_bad_weights_files_are_named(tmp_path):
    with pytest.raises(IsrfError, match="weights file not found"):
        resolve_weights("dino_vits8", tmp_path / "absent.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(IsrfError, match=f"{junk}: cannot load it into dino_vits8"):
        load_backbone("dino_vits8", junk)
    with pytest.raises(IsrfError, match=f"{junk}: not a readable weights file"):
        load_backbone("efficientnet_lite0", junk)


# ----- PCA and maps -------------------------------------------------------------------
def test_streaming_pca_matches_svd_and_is_deterministic():
    generator = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(20, 20, generator=generator))[0]
    scales = torch.linspace(5, 0.1, 20)
    data = (torch.randn(5000, 20, generator=generator) * scales) @ basis.T + 3.0
    pca = StreamingPca(20)
    for chunk in data.split(777):
        pca.add(chunk)
    mean, components = pca.fit(4)
    assert torch.allclose(mean, data.mean(0), atol=1e-4)
    _, _, v = torch.linalg.svd(data - data.mean(0), full_matrices=False)
    for i in range(4):  # same directions, up to sign
        assert abs(float(components[:, i] @ v[i])) > 0.999
    assert torch.all(components[components.abs().argmax(0), torch.arange(4)] > 0)
    projected = project(data[:10], mean, components)
    assert torch.allclose(projected.norm(dim=-1), torch.ones(10), atol=1e-5)


def test_feature_map_sampling_agrees_with_the_full_image():
    maps = torch.nn.functional.normalize(torch.randn(2, 5, 7, 8), dim=-1).half()
    features = FeatureMaps(maps, (20, 28), torch.zeros(8), torch.eye(8))
    rows, cols = torch.meshgrid(torch.arange(20), torch.arange(28), indexing="ij")
    sampled = features.sample(torch.ones(20 * 28, dtype=torch.long), cols.reshape(-1), rows.reshape(-1))
    assert torch.allclose(sampled.reshape(20, 28, 8), features.image(1), atol=1e-3)


def test_backbone_input_size_rounds_to_the_multiple():
    assert backbone_input_size(200, 200, 448, 32) == (448, 448)
    assert backbone_input_size(378, 504, 448, 14) == (336, 448)
    assert backbone_input_size(40, 56, 0, 32) == (32, 64)
    assert backbone_input_size(10, 1000, 100, 8) == (8, 96)


# ----- guided upsampling ----------------------------------------------------------------
def test_guided_upsampling_moves_a_feature_edge_onto_the_colour_edge():
    # Coarse 6x6 maps (8 px per cell): feature A in the left three columns, B in the right
    # three, so the maps change at x = 24. The image's colour changes at x = 21.
    maps = torch.zeros(1, 6, 6, 2)
    maps[:, :, :3, 0] = 1
    maps[:, :, 3:, 1] = 1
    image = torch.zeros(1, 48, 48, 3, dtype=torch.uint8)
    image[:, :, :21] = torch.tensor([200, 60, 40], dtype=torch.uint8)
    image[:, :, 21:] = torch.tensor([40, 90, 220], dtype=torch.uint8)
    guided = guided_upsample(maps, image, (48, 48), radius=4, eps=1e-3)
    assert guided.shape == (1, 48, 48, 2)
    assert torch.allclose(guided.norm(dim=-1), torch.ones(1, 48, 48), atol=1e-5)
    b_share = guided[0, 24, :, 1]                # B's component along one row (unit vectors)
    assert (b_share[:21] < 0.05).all()           # the red side is A alone
    assert b_share[21] - b_share[20] > 0.5       # the features jump at the colour edge
    # Plain bilinear upsampling ramps from A to B over a cell, centred on the cells' edge.
    bilinear = torch.nn.functional.normalize(torch.nn.functional.interpolate(
        maps.permute(0, 3, 1, 2), size=(48, 48), mode="bilinear", align_corners=False), dim=1)
    assert bilinear[0, 1, 24].diff().max() < 0.25 and bilinear[0, 1, 24, 20] > 0.05


def test_guided_map_size_and_radius():
    assert guided_map_size((200, 200), 512) == (200, 200)
    assert guided_map_size((756, 1008), 512) == (384, 512)
    assert guided_radius_pixels(1.0, (56, 56), (200, 200)) == 4
    assert guided_radius_pixels(0.1, (56, 56), (200, 200)) == 1


# ----- extraction and the cache -------------------------------------------------------
def _scene(path, **features):
    config = load_config(None, [f"data.path={path}"])
    return load_scene(config.data), FeaturesConfig(**{**FAST, **features})


def test_extraction_shapes_and_unit_vectors(spheres, tmp_path):
    data, config = _scene(spheres, cache_dir=str(tmp_path / "cache"))
    features = extract_features(data, config, CPU, progress=False)
    # Guided upsampling (the default) gives maps at the images' size.
    assert features.maps.shape == (12, 48, 48, 16) and features.maps.dtype == torch.float16
    assert torch.allclose(features.maps.float().norm(dim=-1), torch.ones(12, 48, 48), atol=2e-3)
    assert features.image(3).shape == (48, 48, 16)
    coarse = extract_features(data, FeaturesConfig(**{**FAST, "guided_radius": 0.0,
                                                      "cache_dir": str(tmp_path / "cache")}),
                              CPU, progress=False)
    assert coarse.maps.shape == (12, 8, 8, 16) and coarse.path != features.path
    assert torch.allclose(coarse.maps.float().norm(dim=-1), torch.ones(12, 8, 8), atol=2e-3)


def test_cancel_during_guided_upsampling_caches_nothing(spheres, tmp_path, monkeypatch):
    data, config = _scene(spheres, cache_dir=str(tmp_path / "cache"))
    cancel = threading.Event()
    real = extract_module.guided_upsample

    def upsample_then_cancel(*args, **kwargs):
        cancel.set()  # as the add-on's cancel button would, while the first batch runs
        return real(*args, **kwargs)

    monkeypatch.setattr(extract_module, "guided_upsample", upsample_then_cancel)
    with pytest.raises(Cancelled, match="guided upsampling cancelled after 8 of 12 images"):
        extract_features(data, config, CPU, progress=False, cancel=cancel)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_cache_is_reused_and_invalidated(spheres, tmp_path, monkeypatch):
    scene_copy = tmp_path / "scene"
    subprocess.run(["cp", "-r", str(spheres), str(scene_copy)], check=True)
    data, config = _scene(scene_copy)
    first = extract_features(data, config, CPU, progress=False)
    assert first.path.parent == scene_copy / ".isrf_cache" and first.path.is_file()

    calls = []
    real = extract_module.run_backbone
    monkeypatch.setattr(extract_module, "run_backbone", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = extract_features(data, config, CPU, progress=False)
    assert calls == [] and again.path == first.path and torch.equal(again.maps, first.maps)

    # Another D: extracted again, and the stale file of this backbone is gone.
    other = extract_features(data, FeaturesConfig(**{**FAST, "dims": 8}), CPU, progress=False)
    assert calls == [1] and other.maps.shape[-1] == 8
    assert sorted((scene_copy / ".isrf_cache").iterdir()) == [other.path]

    # A changed image: a new key, extracted again.
    image = scene_copy / "images" / "r_005.png"
    Image.fromarray(255 - np.asarray(Image.open(image))).save(image)
    changed = extract_features(load_scene(load_config(None, [f"data.path={scene_copy}"]).data),
                               FeaturesConfig(**{**FAST, "dims": 8}), CPU, progress=False)
    assert calls == [1, 1] and changed.path != other.path

    # A damaged cache file is not trusted: extracted again and rewritten.
    changed.path.write_bytes(b"damaged")
    extract_features(load_scene(load_config(None, [f"data.path={scene_copy}"]).data),
                     FeaturesConfig(**{**FAST, "dims": 8}), CPU, progress=False)
    assert calls == [1, 1, 1] and torch.load(changed.path, weights_only=True)["format"] == "isrf-features"


def test_read_only_scene_folder_caches_in_the_home_cache(spheres, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(extract_module.os, "access", lambda path, mode: False)
    data, config = _scene(spheres)
    features = extract_features(data, config, CPU, progress=False)
    assert features.path.is_relative_to(tmp_path / "home" / ".cache" / "isrf")


def test_dims_above_the_backbone_channels_is_refused(spheres):
    data, config = _scene(spheres, dims=500)
    with pytest.raises(IsrfError, match="features.dims: 500 is more than the 472 channels"):
        extract_features(data, config, CPU, progress=False)


# ----- the offline backbone tells the default scene's objects apart -------------------
SEPARATION_MARGIN = 0.10
"""Mean over objects of (within-object cosine - cosine to the other objects' pixels).
Measured 0.15 on this small render (16 views of 128 px); the table, a large textured
plane seen edge-on, is the hardest object (0.05)."""


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="needs bpy to render the default scene")
def test_offline_backbone_separates_the_default_scene_objects(tmp_path):
    scene = tmp_path / "default"
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "blender")}
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_default_scene.py"), "--out", str(scene),
                    "--views", "16", "--size", "128", "--samples", "8"],
                   env=env, check=True, capture_output=True)
    data = load_scene(load_config(None, [f"data.path={scene}", "data.test_every=0"]).data)
    config = FeaturesConfig(input_size=288, dims=32, cache_dir=str(tmp_path / "cache"))
    features = extract_features(data, config, CPU, progress=False)
    masks = torch.from_numpy(np.stack([np.asarray(Image.open(scene / "masks" / Path(n).name))
                                       for n in data.names])).long()
    vectors = torch.cat([features.image(i).reshape(-1, features.dims) for i in range(len(data.names))])
    labels = masks.reshape(-1)
    generator = torch.Generator().manual_seed(0)
    margins = []
    for obj in range(1, 8):
        own, others = vectors[labels == obj], vectors[(labels != obj) & (labels > 0)]
        assert len(own) > 100, f"object {obj} is barely visible"
        own = own[torch.randint(len(own), (1500,), generator=generator)]
        others = others[torch.randint(len(others), (1500,), generator=generator)]
        within, between = float((own @ own.T).mean()), float((own @ others.T).mean())
        assert within > between, f"object {obj}: within {within:.3f} <= between {between:.3f}"
        margins.append(within - between)
    assert np.mean(margins) > SEPARATION_MARGIN, margins


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_extraction_in_fp16_matches_the_cpu(spheres, tmp_path):
    data, config = _scene(spheres, cache_dir=str(tmp_path / "cache"))
    on_cpu = extract_features(data, config, CPU, progress=False, use_cache=False)
    on_gpu = extract_features(data, config, torch.device("cuda"), progress=False, use_cache=False)
    cosine = torch.nn.functional.cosine_similarity(on_cpu.maps.float(), on_gpu.maps.float(), dim=-1)
    assert cosine.mean() > 0.98
