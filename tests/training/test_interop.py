"""A diffusers folder read as a gaussdiff run: the same network output, the same DDIM samples as diffusers'
DDIMPipeline from the same noise, gaussdiff's measurements from the CLI, and every field gaussdiff cannot
represent refused in one line. (diffusers is a test dependency: the dev extra.)"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import expect_error
from gaussdiff import sample
from gaussdiff.cli import main
from gaussdiff.errors import ConfigError
from gaussdiff.training.interop import diffusion_of
from gaussdiff.training.run import load_trained

diffusers = pytest.importorskip("diffusers", reason="diffusers is not installed (pip install -e '.[dev]')")


def tiny_unet(**changes) -> "diffusers.UNet2DModel":
    torch.manual_seed(0)
    config = dict(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(16, 32), layers_per_block=1,
                  down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                  norm_num_groups=8, attention_head_dim=8)
    unet = diffusers.UNet2DModel(**{**config, **changes})
    with torch.no_grad():  # an initialised network has zero output layers; draw every weight
        for p in unet.parameters():
            p.normal_(0, 0.05)
    return unet.eval()


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("diffusers") / "ddim"
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=50, beta_schedule="linear", beta_start=1e-3,
                                        beta_end=0.2, clip_sample=True, timestep_spacing="trailing")
    diffusers.DDIMPipeline(unet=tiny_unet(), scheduler=scheduler).save_pretrained(root)
    return root


def test_the_network_computes_what_diffusers_computes(pipeline_dir):
    trained = load_trained(pipeline_dir)
    unet = diffusers.UNet2DModel.from_pretrained(pipeline_dir / "unet").eval()
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    for t in (0.0, 17.0, 49.0):
        with torch.no_grad():
            ours, theirs = trained.model(x, torch.full((3,), t)), unet(x, torch.full((3,), t)).sample
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)  # the same module called the same way
    assert trained.diffusion.num_steps == 50 and trained.clip_denoised and trained.spacing == "trailing"
    from gaussdiff.cli.options import parse_timesteps

    # --timesteps auto (nothing tuned) takes the scheduler config's spacing, not gaussdiff's linspace.
    assert parse_timesteps("auto", None, trained).spacing == "trailing"
    torch.testing.assert_close(trained.diffusion.schedule.betas, torch.linspace(1e-3, 0.2, 50, dtype=torch.float64))


def test_ddim_equals_diffusers_ddim_pipeline_from_the_same_noise(pipeline_dir):
    pipe = diffusers.DDIMPipeline.from_pretrained(pipeline_dir)
    pipe.set_progress_bar_config(disable=True)
    # With clipping, gaussdiff's DDIM (as improved-diffusion's) takes eps again from the clipped x0: diffusers'
    # use_clipped_model_output=True.
    theirs = pipe(batch_size=2, generator=torch.Generator().manual_seed(3), num_inference_steps=5, eta=0.0,
                  use_clipped_model_output=True, output_type="np").images
    trained = load_trained(pipeline_dir)
    x_T = torch.randn((2, 1, 8, 8), generator=torch.Generator().manual_seed(3))  # diffusers' randn_tensor on CPU
    with torch.no_grad():
        ours = sample(trained.model, trained.diffusion, x_T.shape, "ddim", steps=5, spacing="trailing", x_T=x_T,
                      clip_denoised=trained.clip_denoised, progress=False)
    ours = (ours / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    # float32 against float32, two implementations of the same five steps: rounding only.
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=2e-5)


def test_gaussdiff_samples_and_measures_a_diffusers_model_from_the_cli(pipeline_dir, tmp_path, capsys):
    main(["sample", str(pipeline_dir), "--n", "4", "--steps", "5", "--sampler", "unipc", "--out",
          str(tmp_path / "s.npz"), "--device", "cpu"])
    assert np.load(tmp_path / "s.npz")["arr_0"].shape == (4, 8, 8, 1)
    expect_error(capsys, "eval", pipeline_dir, "--bpd", match="does not name its data: pass --data")
    expect_error(capsys, "sample", pipeline_dir, "--guidance", "2", match="needs the model's null label")
    capsys.readouterr()
    main(["eval", str(pipeline_dir), "--bpd", "--data", "digits", "--n", "6", "--steps", "5", "--json",
          "--out-dir", str(tmp_path), "--device", "cpu"])
    figures = json.loads(capsys.readouterr().out)
    assert figures["bpd"]["bpd"] > 0 and np.isfinite(figures["bpd"]["bpd"])
    main(["eval", str(pipeline_dir), "--fid", "--data", "digits", "--n", "20", "--steps", "4", "--json",
          "--out-dir", str(tmp_path), "--device", "cpu"])
    quality = json.loads(capsys.readouterr().out)["quality"]
    assert quality["n"] == 20 and np.isfinite(quality["fid"])


def test_loading_a_folder_prints_nothing_of_accelerate(pipeline_dir):
    """diffusers asks for accelerate (a package gaussdiff does not need) in several lines on every load unless
    told not to use it; its loggers write through the library's root logger, watched here."""
    import logging

    said: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())
    root = logging.getLogger("diffusers")
    root.addHandler(handler)
    try:
        load_trained(pipeline_dir, device="cpu")
    finally:
        root.removeHandler(handler)
    assert not [line for line in said if "accelerate" in line], said


@pytest.mark.parametrize("field, value, match", [
    ("beta_schedule", "sigmoid", "beta_schedule = 'sigmoid'"),
    ("prediction_type", "flow", "prediction_type = 'flow'"),
    ("variance_type", "learned_log", "variance_type = 'learned_log'"),
    ("clip_sample_range", 2.0, "clip_sample_range = 2.0"),
    ("thresholding", True, "thresholding = True"),
    ("timestep_spacing", "uniform", "timestep_spacing = 'uniform'"),
    ("banana", 1, "banana = 1: a scheduler field gaussdiff does not know"),
])
def test_a_scheduler_field_gaussdiff_cannot_represent_is_refused_naming_it(field, value, match):
    config = {"num_train_timesteps": 50, "beta_schedule": "linear", "clip_sample": True, field: value}
    with pytest.raises(ConfigError, match=match.replace("(", r"\(")):
        diffusion_of(config, Path("scheduler_config.json"))


def test_each_beta_schedule_is_diffusers_own(tmp_path):
    for kind in ("linear", "scaled_linear", "squaredcos_cap_v2"):
        theirs = diffusers.DDPMScheduler(num_train_timesteps=100, beta_schedule=kind).betas.double()
        ours, _ = diffusion_of({"num_train_timesteps": 100, "beta_schedule": kind}, tmp_path)
        # diffusers builds its betas in float32: one float32 rounding apart.
        torch.testing.assert_close(ours.schedule.betas, theirs, rtol=1e-6, atol=1e-8, msg=kind)


def test_pickled_bin_weights_load_as_tensors_only(pipeline_dir, tmp_path, capsys):
    """An older folder whose UNet holds diffusion_pytorch_model.bin (a pickle) samples what the same weights in
    safetensors sample, read by torch.load(weights_only=True); a .bin that holds code is refused, never run."""
    root = tmp_path / "bin"
    unet = diffusers.UNet2DModel.from_pretrained(pipeline_dir / "unet")
    scheduler = diffusers.DDIMScheduler.from_pretrained(pipeline_dir / "scheduler")
    diffusers.DDIMPipeline(unet=unet, scheduler=scheduler).save_pretrained(root, safe_serialization=False)
    assert not list((root / "unet").glob("*.safetensors"))
    for folder, out in ((pipeline_dir, "a.npz"), (root, "b.npz")):
        main(["sample", str(folder), "--n", "2", "--steps", "2", "--out", str(tmp_path / out), "--device", "cpu"])
    assert np.array_equal(np.load(tmp_path / "a.npz")["arr_0"], np.load(tmp_path / "b.npz")["arr_0"])
    victim = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(victim), "w"))

    torch.save({"x": Payload()}, root / "unet" / "diffusion_pytorch_model.bin")
    expect_error(capsys, "sample", root, "--n", "2", "--steps", "2", "--out", tmp_path / "c.npz",
                 match="diffusers cannot load it")
    assert not victim.exists()


def test_without_diffusers_a_diffusers_folder_is_one_line(pipeline_dir, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_diffusers(name, *args, **kwargs):
        if name == "diffusers" or name.startswith("diffusers."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_diffusers)
    expect_error(capsys, "sample", pipeline_dir, "--n", "2", match="pip install 'gaussdiff[diffusers]'")


# -- gaussdiff runs out ---------------------------------------------------------------------------------------


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # zero-initialised output layers would hide a wrong mapping
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


@pytest.mark.parametrize("scale_shift", [True, False])
@pytest.mark.parametrize("classes", [None, 10])
def test_a_gaussdiff_unet_becomes_a_unet2dmodel_computing_the_same_function(scale_shift, classes):
    from gaussdiff.nets import UNet, UNetConfig
    from gaussdiff.training.interop import to_unet2d

    # Attention at 4x4 (64 channels) and in the middle (64): one head width, 32, as UNet2DModel has it.
    config = UNetConfig(image_size=8, in_channels=1, out_channels=1, channels=32, channel_mult=(1, 2),
                        num_res_blocks=1, attention_resolutions=(4,), num_heads=2, scale_shift=scale_shift,
                        emb_act=True, num_classes=classes, conv="direct")
    ours = randomized(UNet(config))
    with torch.no_grad():  # sharp attention (q.k 100 times larger), so that exchanging q and k would show
        for name, p in ours.named_parameters():
            if name.endswith("qkv.weight"):
                p.mul_(10.0)
    theirs = to_unet2d(ours, config)
    x, t = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor([0.0, 20.0, 49.0])
    y = None if classes is None else torch.tensor([0, 3, 10])  # 10: the null label of classifier-free guidance
    with torch.no_grad():
        # float32, two implementations of one function (attention by SDPA against diffusers' processor): rounding.
        torch.testing.assert_close(theirs(x, t, class_labels=y).sample, ours(x, t, y), rtol=1e-4, atol=1e-5)


EXPORT_FLAGS = ["--channels", "32", "--channel-mult", "1", "1", "--num-res-blocks", "1", "--attention-resolutions", "4",
                "--num-heads", "4", "--diffusion-steps", "50", "--batch-size", "8", "--train-steps", "2",
                "--preview-steps", "5", "--device", "cpu", "--precision", "fp32", "--emb-act"]


def test_an_exported_run_samples_in_diffusers_and_comes_back_the_same(tmp_path, capsys):
    from gaussdiff.training.checkpoint import list_checkpoints, save_weights

    main(["train", "--run-dir", str(tmp_path / "run"), *EXPORT_FLAGS])
    checkpoint = list_checkpoints(tmp_path / "run")[-1]
    trained = load_trained(tmp_path / "run")
    save_weights(randomized(trained.model).state_dict(), checkpoint / "ema.safetensors")  # a model with a function
    (checkpoint / "manifest.json").unlink()
    main(["export", str(tmp_path / "run"), "--diffusers", str(tmp_path / "out")])
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"unet", "scheduler", "model_index.json"}
    assert list((tmp_path / "out" / "unet").glob("*.safetensors"))
    trained = load_trained(tmp_path / "run")
    pipe = diffusers.DDIMPipeline.from_pretrained(tmp_path / "out")
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(batch_size=2, generator=torch.Generator().manual_seed(3), num_inference_steps=5, eta=0.0,
                  use_clipped_model_output=True, output_type="np").images
    x_T = torch.randn((2, 1, 8, 8), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = sample(trained.model, trained.diffusion, x_T.shape, "ddim", steps=5, spacing="trailing", x_T=x_T,
                      clip_denoised=True, progress=False)
    np.testing.assert_allclose((ours / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy(), theirs, rtol=0, atol=1e-4)
    ddpm = diffusers.DDPMPipeline.from_pretrained(tmp_path / "out")
    ddpm.set_progress_bar_config(disable=True)
    assert ddpm(batch_size=1, num_inference_steps=3, output_type="np").images.shape == (1, 8, 8, 1)
    back = load_trained(tmp_path / "out")  # re-imported: the same network and schedule
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3.0, 40.0])
    with torch.no_grad():
        torch.testing.assert_close(back.model(x, t), trained.model(x, t), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(back.diffusion.schedule.betas, trained.diffusion.schedule.betas, rtol=1e-6, atol=0)
    expect_error(capsys, "export", tmp_path / "run", "--diffusers", tmp_path / "out", match="not an empty folder")


def test_a_run_diffusers_cannot_express_is_refused_saying_why(tmp_path, capsys):
    main(["train", "--run-dir", str(tmp_path / "plain"), *[f for f in EXPORT_FLAGS if f != "--emb-act"]])
    expect_error(capsys, "export", tmp_path / "plain", "--diffusers", tmp_path / "a", match="train with --emb-act")
    main(["train", "--run-dir", str(tmp_path / "learned"), *EXPORT_FLAGS, "--variance", "learned_range",
          "--loss", "hybrid"])
    expect_error(capsys, "export", tmp_path / "learned", "--diffusers", tmp_path / "b", match="a learned variance")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log"])
def test_each_fixed_variance_is_diffusers_own(variance_type, tmp_path):
    """diffusers' DDPMScheduler draws x_{t-1} with variance beta_tilde_t (fixed_small) or beta_t (fixed_large), each
    also in a _log form (the same variance, returned as a standard deviation or a log): the diffusion read from its
    config must sample with the same variance at every t >= 1 (at t = 0 neither adds noise)."""
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=50, variance_type=variance_type)
    ours, _ = diffusion_of({"num_train_timesteps": 50, "variance_type": variance_type}, tmp_path)
    x_t = torch.zeros(49, 1, dtype=torch.float64)
    t = torch.arange(1, 50)
    variance = ours.posterior_estimate(torch.zeros_like(x_t), x_t, t).variance.squeeze(1)
    theirs = torch.tensor([float(scheduler._get_variance(int(s))) for s in t], dtype=torch.float64)
    if variance_type == "fixed_small_log":  # diffusers returns the standard deviation there
        theirs = theirs**2
    elif variance_type == "fixed_large_log":  # and the log-variance there
        theirs = theirs.exp()
    # diffusers' alpha_bar is a float32 cumulative product, and its beta_tilde 1 - a ratio of two of them: 1e-4
    # relative at the first steps. fixed_small and fixed_large differ by 20% and more at t <= 40.
    torch.testing.assert_close(variance, theirs, rtol=5e-4, atol=0)


def test_a_first_level_wider_than_the_stem_is_refused_saying_why(tmp_path, capsys):
    """gaussdiff's stem (and timestep embedding) are --channels wide whatever --channel-mult says; UNet2DModel's
    are block_out_channels[0] wide: a run whose --channel-mult starts above 1 has no UNet2DModel, and export says
    so in one line before it writes anything (it was an AssertionError from the weight mapping)."""
    flags = list(EXPORT_FLAGS)
    at = flags.index("--channel-mult")
    flags[at + 1 : at + 3] = ["2", "2"]
    main(["train", "--run-dir", str(tmp_path / "wide"), *flags])
    expect_error(capsys, "export", tmp_path / "wide", "--diffusers", tmp_path / "out", match="--channel-mult")
    assert not (tmp_path / "out").exists()


def test_a_level_that_halves_an_odd_size_is_refused_saying_why(tmp_path, capsys):
    """6 -> 3 -> 2: gaussdiff upsamples the 2x2 level back to 3x3, UNet2DModel to 4x4, where the skip of the 3x3
    level no longer fits; export refuses such a run in one line instead of writing a model that fails when run."""
    flags = list(EXPORT_FLAGS)
    at = flags.index("--channel-mult")
    flags[at + 1 : at + 3] = ["1", "1", "1"]
    main(["train", "--run-dir", str(tmp_path / "odd"), "--image-size", "6", *flags])
    expect_error(capsys, "export", tmp_path / "odd", "--diffusers", tmp_path / "out",
                 match="its 3x3 level is halved to 2, which UNet2DModel's upsampling doubles back to 4")
    assert not (tmp_path / "out").exists()
