"""Every sampler on CUDA computes what it computes on CPU: the samplers' arithmetic is device-agnostic (float64
schedules, the model's output cast to x_T's dtype), so from the same x_T a deterministic sampler's CUDA run equals
its CPU run to the rounding of the device's kernels. Skipped without CUDA; the project never needs a GPU."""

import pytest
import torch

from gaussdiff import GaussianDiffusion, NoiseSchedule, sample
from gaussdiff.diffusion.oracle import GaussianMixture, OptimalDenoiser
from gaussdiff.nets import UNet, UNetConfig
from gaussdiff.samplers import SAMPLERS
from gaussdiff.samplers.tuning import STOCHASTIC

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

SCHEDULE = NoiseSchedule.cosine(1000)
MIXTURE = GaussianMixture(means=[[-1.5, -0.5], [1.5, 1.0], [0.5, -1.8]], stds=[0.3, 0.5, 0.25], weights=[0.5, 0.3, 0.2])


def budget(name: str) -> dict:
    return dict(steps=10) if name == "ddpm" else dict(nfe=10, spacing="trailing")


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_sampler_on_the_exact_denoiser_equals_its_cpu_run(name, dtype, tol):
    """The exact denoiser is elementwise closed-form arithmetic: a CUDA run differs from the CPU run only by
    the two devices' rounding of exp/log (float64: ~1e-14; the tolerance leaves room). Stochastic samplers draw
    from each device's own generator, so for them only the device, dtype and finiteness are checked."""
    oracle = OptimalDenoiser(MIXTURE, SCHEDULE)
    diffusion = GaussianDiffusion(SCHEDULE)
    x_T = torch.randn(4096, 2, generator=torch.Generator().manual_seed(0), dtype=dtype)
    cpu = sample(oracle, diffusion, x_T.shape, sampler=name, x_T=x_T, progress=False,
                 generator=torch.Generator().manual_seed(0), **budget(name))
    gpu = sample(oracle, diffusion, x_T.shape, sampler=name, x_T=x_T.cuda(), progress=False,
                 generator=torch.Generator("cuda").manual_seed(0), **budget(name))
    assert gpu.device.type == "cuda" and gpu.dtype == dtype and bool(torch.isfinite(gpu).all())
    if name not in STOCHASTIC:
        assert (gpu.cpu() - cpu).abs().max().item() < tol


@pytest.mark.usefixtures("no_tf32")
@pytest.mark.parametrize("name", [s for s in SAMPLERS if s not in STOCHASTIC])
def test_every_deterministic_sampler_on_a_unet_equals_its_cpu_run(name):
    """The same through a small U-Net (random weights, perturbed so that its output is not zero) in float32, with
    TF32 off: cuDNN's and oneDNN's convolutions then differ only in summation order, ~1e-7 relative a call."""
    torch.manual_seed(0)
    net = UNet(UNetConfig(image_size=16, in_channels=3, out_channels=3, channels=32, channel_mult=(1, 2),
                          attention_resolutions=(8,))).eval()
    with torch.no_grad():  # the output layers start at zero: eps = 0 would test the samplers' arithmetic alone
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    diffusion = GaussianDiffusion(SCHEDULE)
    x_T = torch.randn(16, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        eps = net(x_T, torch.full((16,), 500))
        assert eps.abs().mean() > 0.05  # the network's output counts in what is compared
        cpu = sample(net, diffusion, x_T.shape, sampler=name, nfe=10, x_T=x_T, progress=False)
        gpu = sample(net.cuda(), diffusion, x_T.shape, sampler=name, nfe=10, x_T=x_T.cuda(), progress=False)
    # relative: a random network's x0 = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar) reaches ~1e5 from the
    # first steps; the same run in float64 on CPU differs from the float32 one by ~5e-7 of that
    assert gpu.device.type == "cuda" and (gpu.cpu() - cpu).abs().max().item() < 1e-5 * cpu.abs().max().item()
