"""diffusers folders in and out: a ``UNet2DModel`` and its scheduler config read from disk as the parts of a gaussdiff
:class:`~gaussdiff.training.run.Trained`, and a gaussdiff run written as a ``DDPMPipeline`` folder.

A diffusers pipeline folder (``model_index.json`` beside ``unet/`` and ``scheduler/``), or a
``UNet2DModel`` folder (``config.json`` and its weights) with a scheduler config beside it
(``scheduler_config.json`` in the folder or in ``../scheduler/``), becomes a network that keeps
``model(x_t, t, **cond)`` (class labels ``y`` pass through as ``class_labels``) and a
:class:`GaussianDiffusion` built from the scheduler config. Every field of the config that changes
what the model means is mapped exactly or refused in one line naming it; the fields that only set up
diffusers' own samplers (solver order, Karras sigmas, ...) are the choice of a gaussdiff sampler
instead and are ignored. diffusers is imported here only, and only on this path (the ``diffusers``
extra); nothing is fetched from the Hub. Out, a run becomes a ``UNet2DModel`` computing the same function and a
``DDPMScheduler`` with its betas (:func:`export_diffusers`), or is refused in one line saying why (:func:`exportable`).
"""

from __future__ import annotations

import json
import math
import pickle
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..data.datasets import DataConfig
from ..diffusion.process import DiffusionConfig, GaussianDiffusion
from ..diffusion.schedule import NoiseSchedule
from ..errors import CheckpointError, ConfigError
from ..nets.unet import UNetConfig
from .config import RunConfig

PREDICTIONS = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}
VARIANCES = {"fixed_small": "fixed_small", "fixed_small_log": "fixed_small", "fixed_large": "fixed_large",
             "fixed_large_log": "fixed_large", "learned": "learned", "learned_range": "learned_range"}
SPACINGS = ("leading", "trailing", "linspace")
# Settings of diffusers' own samplers: a gaussdiff sampler (--sampler, --timesteps) takes their place.
SAMPLER_FIELDS = {
    "_class_name", "_diffusers_version", "set_alpha_to_one", "skip_prk_steps", "solver_order", "solver_type",
    "algorithm_type", "lower_order_final", "euler_at_final", "use_karras_sigmas", "use_exponential_sigmas",
    "use_beta_sigmas", "use_lu_lambdas", "use_flow_sigmas", "final_sigmas_type", "lambda_min_clipped",
    "disable_corrector", "solver_p", "predict_x0", "interpolation_type", "timestep_type", "sigma_min", "sigma_max",
    "s_noise", "denoise_to_zero", "variance_type_for_sampler", "dynamic_thresholding_ratio", "sample_max_value",
    "use_dynamic_shifting", "time_shift_type", "flow_shift", "rho", "steps_offset",
}


def is_diffusers_folder(path: Path) -> bool:
    """A pipeline folder, or a ``UNet2DModel`` folder (its ``config.json`` names the class)."""
    if (path / "model_index.json").is_file():
        return True
    try:
        return json.loads((path / "config.json").read_text()).get("_class_name") == "UNet2DModel"
    except (OSError, ValueError, AttributeError):
        return False


def find_parts(path: Path) -> tuple[Path, Path]:
    """The ``unet/`` folder and the scheduler config of a pipeline or a ``UNet2DModel`` folder."""
    if (path / "model_index.json").is_file():
        unet, scheduler = path / "unet", path / "scheduler" / "scheduler_config.json"
    else:
        unet = path
        candidates = [path / "scheduler_config.json", path.parent / "scheduler" / "scheduler_config.json"]
        scheduler = next((c for c in candidates if c.is_file()), candidates[0])
    if not (unet / "config.json").is_file():
        raise CheckpointError(f"{path}: a diffusers folder without {unet / 'config.json'}")
    if not scheduler.is_file():
        raise CheckpointError(f"{path}: no scheduler config (looked for {scheduler}); a UNet2DModel needs its "
                              "scheduler_config.json beside it")
    return unet, scheduler


def diffusion_of(scheduler: dict[str, Any], source: Path) -> tuple[GaussianDiffusion, dict[str, Any]]:
    """A diffusers scheduler config -> the :class:`GaussianDiffusion` it describes, and what sampling should
    know of it (``clip``: whether x0 estimates are clipped to [-1, 1]; ``spacing``: its timestep spacing).
    Anything gaussdiff cannot represent exactly is a :class:`ConfigError` naming the field."""

    def refuse(field: str, why: str) -> ConfigError:
        return ConfigError(f"{source}: {field} = {scheduler.get(field)!r}: {why}")

    T = int(scheduler.get("num_train_timesteps", 1000))
    trained = scheduler.get("trained_betas")
    kind = scheduler.get("beta_schedule", "linear")
    start, end = float(scheduler.get("beta_start", 1e-4)), float(scheduler.get("beta_end", 0.02))
    if trained is not None:
        betas = torch.tensor(trained, dtype=torch.float64)
        if betas.shape != (T,):
            raise refuse("trained_betas", f"{len(betas)} betas for num_train_timesteps = {T}")
        schedule = NoiseSchedule.from_betas(betas)
    elif kind == "linear":
        schedule = NoiseSchedule.linear(T, start, end)
    elif kind == "scaled_linear":  # latent diffusion's: linear in sqrt(beta)
        schedule = NoiseSchedule.from_betas(torch.linspace(math.sqrt(start), math.sqrt(end), T,
                                                           dtype=torch.float64) ** 2)
    elif kind == "squaredcos_cap_v2":  # Nichol & Dhariwal's cosine, betas capped at 0.999, as gaussdiff's
        schedule = NoiseSchedule.cosine(T)
    else:
        raise refuse("beta_schedule", "gaussdiff reads linear, scaled_linear, squaredcos_cap_v2 or trained_betas")
    if scheduler.get("rescale_betas_zero_snr", False):
        schedule = schedule.rescale_zero_terminal_snr()
    prediction = scheduler.get("prediction_type", "epsilon")
    if prediction not in PREDICTIONS:
        raise refuse("prediction_type", "gaussdiff reads epsilon, sample or v_prediction")
    variance = scheduler.get("variance_type") or "fixed_small"
    if variance not in VARIANCES:
        raise refuse("variance_type", f"gaussdiff reads {', '.join(VARIANCES)}")
    clip = bool(scheduler.get("clip_sample", False))
    if clip and float(scheduler.get("clip_sample_range", 1.0)) != 1.0:
        raise refuse("clip_sample_range", "gaussdiff clips x0 estimates to [-1, 1] only")
    if scheduler.get("thresholding", False):
        raise refuse("thresholding", "dynamic thresholding (Imagen) is not a gaussdiff sampler option")
    spacing = scheduler.get("timestep_spacing", "leading")
    if spacing not in SPACINGS:
        raise refuse("timestep_spacing", f"gaussdiff spaces steps by {', '.join(SPACINGS)}")
    if spacing == "leading" and int(scheduler.get("steps_offset", 0)) != 0:
        raise refuse("steps_offset", "gaussdiff's leading spacing has no offset (its steps are 0, k, 2k, ...)")
    known = {"num_train_timesteps", "trained_betas", "beta_schedule", "beta_start", "beta_end",
             "rescale_betas_zero_snr", "prediction_type", "variance_type", "clip_sample", "clip_sample_range",
             "thresholding", "timestep_spacing"} | SAMPLER_FIELDS
    unknown = sorted(set(scheduler) - known)
    if unknown:
        raise refuse(unknown[0],
                     "a scheduler field gaussdiff does not know; it cannot say whether it changes the model")
    diffusion = GaussianDiffusion(schedule, prediction=PREDICTIONS[prediction], variance=VARIANCES[variance])
    return diffusion, {"clip": clip, "spacing": spacing, "prediction": PREDICTIONS[prediction],
                       "variance": VARIANCES[variance], "steps": T}


class DiffusersUNet(nn.Module):
    """A diffusers ``UNet2DModel`` as ``model(x_t, t, **cond) -> [B, C or 2C, H, W]``: ``t`` on the original
    0..T-1 scale (any float), class labels ``y`` passed as ``class_labels``."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        return self.unet(x, t, class_labels=y).sample


def require_diffusers() -> Any:
    try:
        import diffusers
    except ImportError:
        raise ConfigError("reading a diffusers folder needs diffusers: pip install 'gaussdiff[diffusers]'") from None
    return diffusers


def load_bin_unet(diffusers, unet_dir: Path):
    """A UNet2DModel from ``unet_dir``'s config and its ``diffusion_pytorch_model.bin``, unpickled by
    ``torch.load(weights_only=True)``, which builds tensors and refuses any other object (code included)."""
    state = torch.load(unet_dir / "diffusion_pytorch_model.bin", map_location="cpu", weights_only=True)
    unet = diffusers.UNet2DModel.from_config(diffusers.UNet2DModel.load_config(unet_dir))
    unet.load_state_dict(state)
    return unet.eval()


def load_diffusers(path: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, GaussianDiffusion, RunConfig,
                                                                             dict[str, Any]]:
    """A diffusers folder's network (in eval mode, on ``device``), its diffusion, a RunConfig describing its data
    (size, channels, classes; the data set is not named, so measuring needs ``--data``) and what sampling should
    know (``clip``, ``spacing``): the parts of a :class:`~gaussdiff.training.run.Trained`."""
    unet_dir, scheduler_path = find_parts(path)
    try:
        scheduler = json.loads(scheduler_path.read_text())
        unet_config = json.loads((unet_dir / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable diffusers config ({e})") from None
    if unet_config.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise ConfigError(f"{unet_dir / 'config.json'}: a {unet_config.get('_class_name')}; gaussdiff reads "
                          "UNet2DModel (pixel-space DDPM pipelines)")
    diffusion, meaning = diffusion_of(scheduler, scheduler_path)
    diffusers = require_diffusers()
    try:
        if any(unet_dir.glob("*.safetensors")):
            # low_cpu_mem_usage asks for accelerate (not needed here): without it diffusers prints a
            # multi-line plea to install it before every load of the folder.
            unet = diffusers.UNet2DModel.from_pretrained(unet_dir, local_files_only=True, use_safetensors=True,
                                                         low_cpu_mem_usage=False)
        else:  # older folders: a pickled .bin, read as tensors only (weights_only), never as code
            unet = load_bin_unet(diffusers, unet_dir)
    except (OSError, ValueError, EnvironmentError, RuntimeError, pickle.UnpicklingError) as e:
        raise CheckpointError(f"{unet_dir}: diffusers cannot load it ({str(e).splitlines()[0]})") from None
    c = unet.config
    size = c.sample_size if isinstance(c.sample_size, int) else c.sample_size[0]
    if not isinstance(c.sample_size, int) and c.sample_size[0] != c.sample_size[1]:
        raise ConfigError(f"{unet_dir}: sample_size {c.sample_size}: gaussdiff samples square images")
    learned = meaning["variance"] in ("learned", "learned_range")
    if c.out_channels != c.in_channels * (2 if learned else 1):
        raise ConfigError(f"{unet_dir}: {c.out_channels} output channels for {c.in_channels} input channels and "
                          f"variance_type {scheduler.get('variance_type')!r}")
    if c.in_channels not in (1, 3):
        raise ConfigError(f"{unet_dir}: {c.in_channels} channels; gaussdiff reads grey or RGB image models")
    num_classes = c.num_class_embeds
    data = DataConfig(data="", image_size=size, image_channels=c.in_channels, num_classes=num_classes)
    model = UNetConfig(image_size=size, in_channels=c.in_channels, out_channels=c.out_channels,
                       num_classes=num_classes)
    run = RunConfig(data=data, model=model,
                    diffusion=DiffusionConfig(diffusion_steps=meaning["steps"], prediction=meaning["prediction"],
                                              variance=meaning["variance"]))
    if num_classes is not None:
        run = replace(run, conditioning=replace(run.conditioning, class_conditional=True))
    return DiffusersUNet(unet).to(device).eval(), diffusion, run, meaning


# -- gaussdiff runs out -------------------------------------------------------------------------------


def exportable(trained) -> None:
    """Refuse, in one line saying why, a run that diffusers' UNet2DModel with a DDPM scheduler cannot express."""
    c, m = trained.config, trained.config.model
    why = None
    if trained.source != "gaussdiff":
        why = "it is a diffusers model already"
    elif trained.latent is not None:
        why = "a latent model: DDPMPipeline and DDIMPipeline sample pixels, with no autoencoder to decode"
    elif c.conditioning.text:
        why = "a text model: UNet2DModel has no cross-attention (diffusers' UNet2DConditionModel has another layout)"
    elif c.super_res.super_res is not None:
        why = "a super-resolution stage: UNet2DModel takes no low-resolution condition"
    elif trained.diffusion.learns_variance:
        why = "a learned variance: DDIMPipeline cannot read the extra output channels (train --variance fixed_small)"
    elif not m.emb_act:
        why = ("its residual blocks take the timestep embedding without the SiLU that diffusers' blocks apply: train "
               "with --emb-act to export")
    elif m.channel_mult[0] != 1:
        # gaussdiff's stem and timestep embedding are --channels wide; UNet2DModel's are its first level's width.
        why = (f"its first level is {m.channel_mult[0]}x --channels wide (--channel-mult starts at "
               f"{m.channel_mult[0]}), and UNet2DModel's stem has its first level's width: train with --channel-mult "
               "starting at 1")
    elif any(r % 2 for r in m.level_resolutions()[:-1]):
        # gaussdiff halves an odd level rounding up and upsamples back to its size; UNet2DModel doubles, to one more.
        odd = next(r for r in m.level_resolutions()[:-1] if r % 2)
        why = (f"its {odd}x{odd} level is halved to {(odd + 1) // 2}, which UNet2DModel's upsampling doubles back to "
               f"{odd + 1}: export a run whose levels halve evenly (image size, or fewer --channel-mult levels)")
    else:
        groups = {math.gcd(32, m.channels * k) for k in m.channel_mult}
        heads_dims = {width // m.num_heads for width in m.attention_channels()}
        if len(groups) > 1:
            why = f"its GroupNorms have {sorted(groups)} groups; UNet2DModel uses one count (widths divisible by 32)"
        elif len(heads_dims) > 1:
            why = (f"its attention heads are {sorted(heads_dims)} wide at different levels; UNet2DModel uses one head "
                   "width (attention at one width, or --num-heads scaled with it)")
    if why:
        raise ConfigError(f"{trained.checkpoint}: cannot export to diffusers: {why}")


def unet2d_config(m: UNetConfig) -> dict[str, Any]:
    """The UNet2DModel that computes what gaussdiff's U-Net of config ``m`` computes."""
    res, down, up = m.image_size, [], []
    for mult in m.channel_mult:
        attends = res in m.attention_resolutions
        down.append("AttnDownBlock2D" if attends else "DownBlock2D")
        up.insert(0, "AttnUpBlock2D" if attends else "UpBlock2D")
        res = (res + 1) // 2
    return dict(sample_size=m.image_size, in_channels=m.in_channels, out_channels=m.out_channels,
                block_out_channels=tuple(m.channels * k for k in m.channel_mult), layers_per_block=m.num_res_blocks,
                down_block_types=tuple(down), up_block_types=tuple(up), flip_sin_to_cos=True, freq_shift=0,
                time_embedding_type="positional", act_fn="silu", norm_num_groups=math.gcd(32, m.channels),
                # Set, or UNet2DModel leaves the middle attention without its norm under scale-shift.
                attn_norm_num_groups=math.gcd(32, m.channels),
                norm_eps=1e-5, attention_head_dim=m.channels * m.channel_mult[-1] // m.num_heads,
                resnet_time_scale_shift="scale_shift" if m.scale_shift else "default", dropout=m.dropout,
                downsample_padding=1, num_class_embeds=None if m.num_classes is None else m.num_classes + 1)


def unet2d_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """gaussdiff's U-Net weights under UNet2DModel's names (1x1 attention convolutions as linear maps, the fused
    q/k/v split in three)."""
    block = {"norm1": "norm1", "conv1": "conv1", "emb": "time_emb_proj", "norm2": "norm2", "conv2": "conv2",
             "skip": "conv_shortcut"}
    out: dict[str, Tensor] = {}

    def attention(src: str, dst: str) -> None:
        for rest in ("weight", "bias"):
            out[f"{dst}.group_norm.{rest}"] = state[f"{src}.norm.{rest}"]
        for name, w, b in zip(("to_q", "to_k", "to_v"), state[f"{src}.qkv.weight"][:, :, 0, 0].chunk(3),
                              state[f"{src}.qkv.bias"].chunk(3)):
            out[f"{dst}.{name}.weight"], out[f"{dst}.{name}.bias"] = w, b
        out[f"{dst}.to_out.0.weight"] = state[f"{src}.proj.weight"][:, :, 0, 0]
        out[f"{dst}.to_out.0.bias"] = state[f"{src}.proj.bias"]

    def resnet(src: str, dst: str) -> None:
        for key, value in state.items():
            if key.startswith(src + "."):
                part, _, rest = key[len(src) + 1:].partition(".")
                out[f"{dst}.{block[part]}.{rest}"] = value

    simple = {"embedding.time_mlp.0": "time_embedding.linear_1", "embedding.time_mlp.2": "time_embedding.linear_2",
              "embedding.label_emb": "class_embedding", "down.stem": "conv_in", "out.0": "conv_norm_out",
              "out.2": "conv_out"}
    for key, value in state.items():
        prefix, _, rest = key.rpartition(".")
        if prefix in simple:
            out[f"{simple[prefix]}.{rest}"] = value

    def level_path(levels: str, resample: str, dst: str, sampler: str) -> None:
        """One half of the U-Net (``down.levels`` or ``up``): each level's blocks, attentions and resampling."""
        depth = levels.count(".") + 1  # where the level's index sits in a key
        for i in sorted({int(k.split(".")[depth]) for k in state if k.startswith(levels + ".")}):
            for j in sorted({int(k.split(".")[depth + 2]) for k in state if k.startswith(f"{levels}.{i}.blocks.")}):
                resnet(f"{levels}.{i}.blocks.{j}", f"{dst}.{i}.resnets.{j}")
                if f"{levels}.{i}.attentions.{j}.qkv.weight" in state:
                    attention(f"{levels}.{i}.attentions.{j}", f"{dst}.{i}.attentions.{j}")
            for rest in ("weight", "bias") if f"{resample}.{i}.weight" in state else ():
                out[f"{dst}.{i}.{sampler}.0.conv.{rest}"] = state[f"{resample}.{i}.{rest}"]

    level_path("down.levels", "down.downsample", "down_blocks", "downsamplers")
    resnet("mid1", "mid_block.resnets.0")
    attention("mid_attn", "mid_block.attentions.0")
    resnet("mid2", "mid_block.resnets.1")
    level_path("up", "upsample", "up_blocks", "upsamplers")
    return out


def to_unet2d(model: nn.Module, m: UNetConfig) -> nn.Module:
    """A diffusers UNet2DModel with ``model``'s weights, computing the same function."""
    diffusers = require_diffusers()
    unet = diffusers.UNet2DModel(**unet2d_config(m))
    state = unet2d_state({k: v.detach().cpu().float() for k, v in model.state_dict().items()})
    theirs = unet.state_dict()
    missing, extra = sorted(set(theirs) - set(state)), sorted(set(state) - set(theirs))
    wrong = [k for k in theirs if k in state and theirs[k].shape != state[k].shape]
    if missing or extra or wrong:  # a mapping bug, not a user error: say exactly where
        raise AssertionError(f"UNet2DModel mapping: missing {missing[:3]}, unexpected {extra[:3]}, shapes {wrong[:3]}")
    unet.load_state_dict(state)
    return unet.eval()


def scheduler_config(trained) -> dict[str, Any]:
    """The DDPMScheduler config of a run's diffusion: its betas exactly (``trained_betas``), prediction, variance,
    clipping to [-1, 1], and trailing spacing. Not linspace: diffusers' DDIM steps from t to t - T // steps
    whatever the next of its timesteps is, which only trailing and leading spacing with a step count dividing
    T make the same; trailing also starts at the last step (Lin et al. 2024)."""
    d = trained.diffusion
    return dict(num_train_timesteps=d.num_steps, trained_betas=d.schedule.betas.tolist(),
                prediction_type={v: k for k, v in PREDICTIONS.items()}[d.prediction],
                variance_type=d.variance, clip_sample=True, clip_sample_range=1.0, timestep_spacing="trailing")


def export_diffusers(trained, out: Path) -> Path:
    """Write ``trained`` as a diffusers DDPMPipeline folder (``unet/`` in safetensors, ``scheduler/``,
    ``model_index.json``) that ``DDPMPipeline.from_pretrained(out)`` and ``DDIMPipeline`` load without gaussdiff."""
    exportable(trained)
    diffusers = require_diffusers()
    unet = to_unet2d(trained.model, trained.config.model)
    scheduler = diffusers.DDPMScheduler(**scheduler_config(trained))
    diffusers.DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(out, safe_serialization=True)
    return out
