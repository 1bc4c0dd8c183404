"""Training and loading the noise-aware classifier of classifier guidance, with a constant stand-in dataset."""

import json

import pytest
import torch

from conftest import override
from gaussdiff.data.datasets import ImageData
from gaussdiff.errors import NonFiniteError
from gaussdiff.nets import NoisyClassifier
from gaussdiff.training.checkpoint import save_weights
from gaussdiff.training.classifier import WEIGHTS, load_noisy_classifier, train_noisy_classifier
from gaussdiff.training.config import ClassifierTrainConfig, save_config


def blank_data(monkeypatch, n: int = 16) -> ImageData:
    """Every image black (x0 = -1 everywhere in the model's range), labels 0, 1, 2 in turn; both splits."""
    data = ImageData(torch.zeros(n, 1, 8, 8, dtype=torch.uint8), torch.arange(n) % 3, ["a", "b", "c"])
    monkeypatch.setattr("gaussdiff.training.classifier.load_configured", lambda config, split="train": data)
    return data


def tiny(steps: int, diffusion_steps: int, batch_size: int) -> ClassifierTrainConfig:
    return override(ClassifierTrainConfig(), **{
        "classifier_steps": steps, "batch_size": batch_size, "diffusion.diffusion_steps": diffusion_steps,
        "classifier.encoder.channels": 8, "classifier.encoder.num_res_blocks": 1, "device": "cpu",
        "optim.precision": "fp32"})


def test_training_sees_x_t_from_q_at_uniform_t_and_reports_accuracy_at_quarters_of_t(tmp_path, monkeypatch):
    """Dhariwal & Nichol §4.1: the classifier learns on x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, eps ~ N(0, I),
    t uniform over all of 0..T-1 (T - 1 included), told t itself (no respacing in training). With x0 = -1 the
    standardised residual (x_t + sqrt(abar_t)) / sqrt(1 - abar_t) is the noise: mean 0, std 1 over 2 x 32 x 64
    pixels (a clean x0 would leave a constant). The held-out accuracies are at t = int(f (T - 1)), f = 0, 1/4, 1/2,
    3/4 (0, 2, 4, 6 of T = 10), each named by the t the network was given and equal to the fraction its argmax
    gets right; metrics.json holds the same."""
    data = blank_data(monkeypatch)
    config = tiny(steps=2, diffusion_steps=10, batch_size=32)
    seen = {"train": [], "eval": []}
    original = NoisyClassifier.forward

    def recording(self, x, t, *args, **kwargs):
        out = original(self, x, t, *args, **kwargs)
        seen["train" if self.training else "eval"].append((x.detach().double(), t.clone(), out.detach()))
        return out

    monkeypatch.setattr(NoisyClassifier, "forward", recording)
    accuracy = train_noisy_classifier(config, tmp_path / "clf", progress=False)

    abar = torch.cumprod(1 - config.diffusion.build().schedule.betas.double(), 0)  # Eq. 4's alpha bar
    x = torch.cat([x for x, _, _ in seen["train"]])
    t = torch.cat([t for _, t, _ in seen["train"]])
    assert len(seen["train"]) == 2 and len(t) == 64
    assert sorted(set(t.tolist())) == list(range(10))  # P(some t missing from 64 uniform draws) < 1%
    eps = (x + abar[t].sqrt().view(-1, 1, 1, 1)) / (1 - abar[t]).sqrt().view(-1, 1, 1, 1)
    assert abs(eps.mean().item()) < 0.05 and abs(eps.std().item() - 1) < 0.05

    assert [int(t[0]) for _, t, _ in seen["eval"]] == [0, 2, 4, 6]
    expected = {f"accuracy_at_t={int(t[0])}": (out.argmax(1) == data.labels).double().mean().item()
                for _, t, out in seen["eval"]}
    assert accuracy == pytest.approx(expected, abs=1e-12)
    assert json.loads((tmp_path / "clf" / "metrics.json").read_text()) == pytest.approx(expected, abs=1e-12)


def test_a_non_finite_loss_stops_training_before_anything_is_saved(tmp_path, monkeypatch):
    """A NaN loss is never stepped on: the run stops with NonFiniteError naming the step, and writes no files."""
    blank_data(monkeypatch)
    real = torch.nn.functional.cross_entropy
    monkeypatch.setattr(torch.nn.functional, "cross_entropy", lambda *a, **k: real(*a, **k) * float("nan"))
    with pytest.raises(NonFiniteError, match="classifier step 1"):
        train_noisy_classifier(tiny(steps=2, diffusion_steps=4, batch_size=4), tmp_path / "clf", progress=False)
    assert not (tmp_path / "clf").exists()


def test_a_loaded_classifier_is_in_eval_mode_with_its_weights(tmp_path):
    """Guidance differentiates the loaded classifier: it must come back in eval mode (dropout off, so the same x
    gives the same gradient), with the saved weights bitwise."""
    config = override(tiny(steps=1, diffusion_steps=4, batch_size=4), **{"classifier.encoder.dropout": 0.5})
    torch.manual_seed(0)
    saved = NoisyClassifier(config.classifier)
    tmp_path.mkdir(exist_ok=True)
    save_weights(saved.state_dict(), tmp_path / WEIGHTS)
    save_config(config, tmp_path / "config.json")
    model, loaded_config = load_noisy_classifier(tmp_path)
    assert not model.training and all(not m.training for m in model.modules())
    assert loaded_config == config
    for name, p in saved.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], p, rtol=0, atol=0)
