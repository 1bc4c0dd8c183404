"""Configs read from disk are checked field by field: a wrong type, an unknown field or a newer format is one
line naming it, and every config gaussdiff writes reads back equal."""

import json

import pytest

from conftest import tiny_config
from gaussdiff.errors import ConfigError
from gaussdiff.training.config import (AutoencoderTrainConfig, ClassifierTrainConfig, FORMAT, RunConfig, load_config,
                                       save_config, to_dict)


@pytest.mark.parametrize("config", [RunConfig(), tiny_config(), ClassifierTrainConfig(), AutoencoderTrainConfig()],
                         ids=["run", "tiny", "classifier", "autoencoder"])
def test_a_saved_config_reads_back_equal(config, tmp_path):
    save_config(config, tmp_path / "config.json")
    assert load_config(tmp_path / "config.json", type(config)) == config


def write_with(config: RunConfig, path: tuple[str, ...], value, out) -> None:
    """``config`` as JSON in ``out``, with the field at ``path`` set to ``value`` (as a hand edit would)."""
    raw = to_dict(config)
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    out.write_text(json.dumps(raw))


@pytest.mark.parametrize("path, value, match", [
    (("model", "channels"), "64", "field model.channels is '64', not a whole number"),
    (("train", "batch_size"), True, "field train.batch_size is True"),
    (("diffusion", "schedule"), "banana", "field diffusion.schedule is 'banana', not one of 'linear', 'cosine'"),
    (("model", "channel_mult"), [1, "2"], "field model.channel_mult[1] is '2'"),
    (("train", "optim", "grad_clip"), "none", "field train.optim.grad_clip is 'none'"),
    (("train",), 5, "field train is 5, not a section"),
])
def test_a_field_of_the_wrong_type_is_one_line_naming_it(tmp_path, path, value, match):
    write_with(RunConfig(), path, value, tmp_path / "config.json")
    with pytest.raises(ConfigError, match=match.replace("[", r"\[").replace("]", r"\]")) as error:
        load_config(tmp_path / "config.json")
    assert str(error.value).startswith(str(tmp_path / "config.json")) and "\n" not in str(error.value)


def test_a_config_from_a_newer_gaussdiff_is_refused(tmp_path):
    save_config(RunConfig(), tmp_path / "config.json")
    raw = json.loads((tmp_path / "config.json").read_text())
    raw["format"] = FORMAT + 1
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=f"written by a newer gaussdiff \\(config format {FORMAT + 1}"):
        load_config(tmp_path / "config.json")


@pytest.mark.parametrize("switch, mode", [(True, "default"), (False, "off")])
def test_a_config_from_before_compile_modes_reads_its_switch_as_a_mode(tmp_path, switch, mode):
    """``compile`` was a bool before it took torch.compile's modes; such a run still resumes, compiled as it was."""
    raw = to_dict(tiny_config())
    raw["train"]["compile"] = switch
    (tmp_path / "config.json").write_text(json.dumps(raw))
    assert load_config(tmp_path / "config.json").train.compile == mode


def test_a_config_from_before_the_mirrored_way_up_keeps_the_shape_of_its_weights(tmp_path):
    """A run saved before ``up_attention`` existed built its way up with doubled resolutions: it reads back as
    ``doubled`` (its weights' shape), while a config that names the field, and every new run, keeps its value."""
    raw = to_dict(tiny_config())
    assert raw["model"]["up_attention"] == "mirror"
    (tmp_path / "config.json").write_text(json.dumps(raw))
    assert load_config(tmp_path / "config.json").model.up_attention == "mirror"
    del raw["model"]["up_attention"]
    (tmp_path / "config.json").write_text(json.dumps(raw))
    assert load_config(tmp_path / "config.json").model.up_attention == "doubled"


@pytest.mark.parametrize("path, value, match", [
    (("diffusion", "diffusion_steps"), -5, "--diffusion-steps must be at least 1, not -5"),
    (("model", "channels"), 0, "--channels must be at least 1, not 0"),
    (("model", "num_heads"), 0, "--num-heads must be at least 1"),
])
def test_a_checkpoint_config_out_of_range_is_one_line_before_any_use(tmp_path, path, value, match):
    """Types are checked as the file is read; a checkpoint's config is also checked for the ranges that building
    or sampling the model needs, so that a hand-edited file fails as one line, not deep in the sampler."""
    from gaussdiff.errors import CheckpointError
    from gaussdiff.training.checkpoint import load_checkpoint_config

    write_with(tiny_config(), path, value, tmp_path / "config.json")
    with pytest.raises(CheckpointError, match=match) as error:
        load_checkpoint_config(tmp_path)
    assert str(error.value).startswith(str(tmp_path / "config.json")) and "\n" not in str(error.value)


@pytest.mark.parametrize("cls, section", [(RunConfig, "diffusion"), (RunConfig, "model"),
                                          (ClassifierTrainConfig, "diffusion")])
def test_a_config_missing_a_section_every_run_saves_is_refused(tmp_path, cls, section):
    """A field or section added in a later version takes its default (older runs lack it); a section every run has
    saved since 0.1 missing means damage, which defaults would hide: another schedule, another network."""
    raw = to_dict(cls())
    del raw[section]
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=f"no {section} section"):
        load_config(tmp_path / "config.json", cls)
    raw = to_dict(cls())
    del raw["data"]["data_dir"]  # a field: its default
    (tmp_path / "config.json").write_text(json.dumps(raw))
    assert load_config(tmp_path / "config.json", cls) == cls()
