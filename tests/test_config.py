"""`engine.config.load_config` and the CLI's `--set`: real TOML files, real messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cli import main
from engine.config import Config, config_from_dict, config_from_saved, load_config
from engine.errors import IsrfError
from locations import REPO

CONFIGS = sorted((REPO / "configs").glob("*.toml"))


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_error(path: Path | None, overrides=()) -> str:
    with pytest.raises(IsrfError) as caught:
        load_config(path, overrides)
    return str(caught.value)


# ----- valid configs --------------------------------------------------------------------

def test_no_file_gives_the_defaults():
    config = load_config(None)
    assert config == Config()
    assert config.train.steps == 1500 and config.data.format == "auto"
    assert config.field.upscale_steps == [300, 600, 900]


def test_file_values_are_used_and_the_rest_default(tmp_path):
    path = write(tmp_path, '[data]\npath = "scenes/x"\nformat = "llff"\n'
                           "[field]\nupscale_steps = [5]\n[train]\nsteps = 42\n")
    config = load_config(path)
    assert config.data.path == "scenes/x" and config.data.format == "llff"
    assert config.field.upscale_steps == [5]
    assert config.train.steps == 42
    assert config.train.batch_rays == Config().train.batch_rays


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_config_loads(path):
    assert isinstance(load_config(path), Config)


def test_shipped_configs_include_default_and_fern():
    assert {"default.toml", "fern.toml"} <= {p.name for p in CONFIGS}


def test_int_is_accepted_for_a_float_field(tmp_path):
    config = load_config(write(tmp_path, "[train]\nlr_mlp = 1\n"))
    assert config.train.lr_mlp == 1.0 and isinstance(config.train.lr_mlp, float)


# ----- invalid file contents: the message names the file and the key -------------------

def test_unknown_key_names_file_and_key(tmp_path):
    path = write(tmp_path, "[train]\nstepz = 3\n")
    message = load_error(path)
    assert str(path) in message and "train.stepz" in message and "unknown key" in message


def test_unknown_section_names_file_and_section(tmp_path):
    path = write(tmp_path, "[trian]\nsteps = 3\n")
    message = load_error(path)
    assert str(path) in message and "trian" in message and "unknown key" in message


@pytest.mark.parametrize("text, key", [
    ('[train]\nsteps = "5"\n', "train.steps"),          # string for an int: no coercion
    ('[train]\nlr_mlp = "a"\n', "train.lr_mlp"),        # string for a float
    ("[train]\nsteps = 5.0\n", "train.steps"),          # float for an int
    ("[train]\nsteps = 0\n", "train.steps"),            # out of range (> 0)
    ("[field]\nalpha_init = 1.5\n", "field.alpha_init"),  # out of range (< 1)
    ('[data]\nformat = "colmap"\n', "data.format"),     # not one of the Literal values
    ("[data]\nformat = 3\n", "data.format"),
    ('[features]\nbackbone = "resnet50"\n', "features.backbone"),
    ("[features]\nscales = [1.0, 0]\n", "features.scales.1"),
    ('[features]\nflip = "yes"\n', "features.flip"),
    ("[distill]\nsteps = -1\n", "distill.steps"),
    ("[segment]\nsigma_f = 1e-9\n", "segment.sigma_f"),  # under 0.001: the weights overflow
])
def test_bad_value_names_file_and_key(tmp_path, text, key):
    path = write(tmp_path, text)
    message = load_error(path)
    assert message.startswith(f"{path}: {key}: "), message
    assert "\n" not in message


def test_bad_literal_lists_the_allowed_values(tmp_path):
    message = load_error(write(tmp_path, '[data]\nformat = "colmap"\n'))
    assert all(value in message for value in ("auto", "llff", "360", "transforms"))


def test_invalid_toml_names_the_file(tmp_path):
    path = write(tmp_path, "[train]\nsteps = = 3\n")
    message = load_error(path)
    assert str(path) in message and "not valid TOML" in message


def test_non_utf8_file_names_the_file(tmp_path):
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe[train]\x00")
    assert str(path) in load_error(path)


def test_missing_config_file_names_the_file(tmp_path):
    path = tmp_path / "absent.toml"
    message = load_error(path)
    assert str(path) in message and "not found" in message


# ----- --set overrides ------------------------------------------------------------------

def test_set_overrides_a_file_value(tmp_path):
    path = write(tmp_path, "[train]\nsteps = 42\nbatch_rays = 128\n")
    config = load_config(path, ["train.steps=7"])
    assert config.train.steps == 7 and config.train.batch_rays == 128


def test_set_bare_word_becomes_a_string():
    assert load_config(None, ["data.path=some/where"]).data.path == "some/where"


def test_set_quoted_string_is_unquoted():
    assert load_config(None, ['data.path="some where"']).data.path == "some where"


def test_set_toml_list_becomes_a_list():
    assert load_config(None, ["field.upscale_steps=[1,2]"]).field.upscale_steps == [1, 2]


def test_later_set_wins():
    assert load_config(None, ["train.steps=3", "train.steps=9"]).train.steps == 9


@pytest.mark.parametrize("item", ["nothing", "steps=3", "train.=3"])
def test_malformed_set_names_the_item(item):
    message = load_error(None, [item])
    assert f"--set {item!r}" in message


def test_set_with_a_bad_value_names_the_key():
    message = load_error(None, ["train.steps=abc"])  # a bare word: a string, not an int
    assert "train.steps" in message


def test_bad_set_value_blames_set_not_the_file(tmp_path):
    path = tmp_path / "ok.toml"
    path.write_text("[train]\nsteps = 10\n")
    message = load_error(path, ["train.steps=0"])
    assert message.startswith("--set: train.steps:")


def test_set_unknown_key_names_the_key():
    message = load_error(None, ["train.stepz=1"])
    assert "train.stepz" in message and "unknown key" in message


# ----- through the CLI ------------------------------------------------------------------

def _cli(capsys, *argv) -> tuple[int, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def _assert_one_error_line(code: int, err: str, *names: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    assert err.strip().count("\n") == 0, err
    assert err.startswith("isrf: error: "), err
    for name in names:
        assert name in err, err


def test_cli_bad_config_file_exits_2_naming_the_key(capsys, tmp_path):
    path = write(tmp_path, "[train]\nsteps = -4\n", "bad.toml")
    code, err = _cli(capsys, "train", "--config", path)
    _assert_one_error_line(code, err, str(path), "train.steps")


def test_cli_unknown_key_in_config_exits_2_naming_the_key(capsys, tmp_path):
    path = write(tmp_path, "[field]\nvoxels = 3\n", "bad.toml")
    code, err = _cli(capsys, "train", "--config", path)
    _assert_one_error_line(code, err, str(path), "field.voxels", "unknown key")


def test_cli_missing_config_exits_2_naming_the_file(capsys, tmp_path):
    path = tmp_path / "absent.toml"
    code, err = _cli(capsys, "train", "--config", path)
    _assert_one_error_line(code, err, str(path))


def test_cli_malformed_set_exits_2_naming_the_item(capsys):
    code, err = _cli(capsys, "train", "--set", "steps=3")
    _assert_one_error_line(code, err, "steps=3")


def test_inconsistent_grid_sizes_are_rejected():
    message = load_error(None, ["field.num_voxels_start=9999999"])
    assert message.startswith("--set: field:") and "num_voxels_start" in message
    assert "repeat" in load_error(None, ["field.upscale_steps=[5,5]"])


def test_saved_pixel_lengths_are_upgraded_with_a_warning():
    """Checkpoints and sessions saved before the photo assists' lengths became fractions
    of the image's long side still load: 6 px and 5 px (of the 200-px default scene) read
    as 0.03 and 0.025; a TOML that writes pixels today is refused, naming the key."""
    saved = {"segment": {"mask_edge_radius": 6, "mask_grabcut_band": 5, "clusters": 9}}
    with pytest.warns(UserWarning, match="in pixels, read as fractions of the image's long "
                      "side: segment.mask_edge_radius = 6 px -> 0.03, "
                      "segment.mask_grabcut_band = 5 px -> 0.025"):
        config = config_from_saved(saved, "old.pt (config)")
    assert config.segment.mask_edge_radius == pytest.approx(0.03)
    assert config.segment.mask_grabcut_band == pytest.approx(0.025)
    assert config.segment.clusters == 9
    assert config_from_saved({"segment": {"mask_edge_radius": 0.1}}, "new.pt").segment.mask_edge_radius == 0.1
    with pytest.raises(IsrfError, match="segment.mask_edge_radius"):
        config_from_dict({"segment": {"mask_edge_radius": 6}}, "today.toml")
