"""Conditions as data: dropping for classifier-free training, the null branch, and guidance that moves
samples toward the condition asked for (proven with the exact denoisers of a Gaussian mixture)."""

import math

import pytest
import torch

from conftest import tiny_config
from gaussdiff import GaussianDiffusion, NoiseSchedule, sample
from gaussdiff.conditioning import (ClassifierFreeGuidance, ClassifierGuidance, ClassLabel, drop_conditions,
                                    null_conditions)
from gaussdiff.diffusion.oracle import GaussianMixture, OptimalDenoiser
from gaussdiff.training.trainer import Trainer

F64 = torch.float64


def test_drop_conditions_replaces_each_by_its_null_with_its_own_probability():
    labels = ClassLabel(num_classes=10, p_drop=0.3)
    n = 20_000
    y = torch.arange(n) % 10
    dropped = drop_conditions({"y": y, "other": torch.ones(n)}, [labels], torch.Generator().manual_seed(0))
    is_null = dropped["y"] == 10
    # A binomial share of n draws: within 5 standard errors sqrt(p (1 - p) / n) of p.
    assert abs(is_null.double().mean().item() - 0.3) < 5 * math.sqrt(0.3 * 0.7 / n)
    assert torch.equal(dropped["y"][~is_null], y[~is_null])  # the rest are untouched
    assert torch.equal(dropped["other"], torch.ones(n))  # a condition the model does not take passes through
    assert torch.equal(drop_conditions({"y": y}, [ClassLabel(10, 0.0)])["y"], y)


def test_null_conditions_replace_the_models_conditions_only_and_need_them():
    cond = {"y": torch.tensor([1, 2]), "other": torch.tensor([5.0, 6.0])}
    null = null_conditions(cond, [ClassLabel(10)])
    assert null["y"].tolist() == [10, 10] and torch.equal(null["other"], cond["other"])
    with pytest.raises(ValueError, match="'y'"):
        null_conditions({"other": cond["other"]}, [ClassLabel(10)])


def test_the_trainer_drops_labels_for_classifier_free_training(tmp_path):
    """The network sees the null label in a share p_uncond of the examples, and the labels of the data in the rest."""
    cfg = tiny_config(steps=4, **{"conditioning.class_conditional": True, "conditioning.p_uncond": 0.3,
                                  "train.batch_size": 64})
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    seen = []
    trainer.model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["y"].clone()),
                                            with_kwargs=True)
    data_labels = []
    for _ in range(4):
        data_labels.append(trainer.data.labels[trainer.batch_indices(trainer.step)])
        trainer.train_step()
    y, truth = torch.cat(seen), torch.cat(data_labels)
    null = y == 10
    n = len(y)  # 256 labels: 5 binomial standard errors of the share is 0.14
    assert abs(null.double().mean().item() - 0.3) < 5 * math.sqrt(0.3 * 0.7 / n)
    assert torch.equal(y[~null], truth[~null])


# Two overlapping classes: guidance has room to sharpen them.
MIXTURE = GaussianMixture(means=[[-0.6, 0.0], [0.6, 0.0]], stds=[0.5, 0.5], weights=[0.5, 0.5])


class ClassConditionalOracle:
    """The exact eps of each class (one mixture component) for y in {0, 1}, and of the whole mixture for
    the null label 2: the optimal class-conditional denoiser with its learned unconditional branch."""

    def __init__(self, schedule: NoiseSchedule) -> None:
        self.unconditional = OptimalDenoiser(MIXTURE, schedule)
        self.classes = [OptimalDenoiser(GaussianMixture(MIXTURE.means[k : k + 1], MIXTURE.stds[k : k + 1], [1.0]),
                                        schedule)
                        for k in range(2)]

    def __call__(self, x_t, t, y):
        out = self.unconditional(x_t, t)
        for k, oracle in enumerate(self.classes):
            mask = y == k
            if mask.any():
                out[mask] = oracle(x_t[mask], t[mask])
        return out


def bayes_classifier(schedule: NoiseSchedule):
    """log p(y | x_t) of the noised mixture: the exact noise-aware classifier, as logits."""

    def classifier(x_t, t):
        _, r = MIXTURE.log_prob_noised(x_t.double(), schedule.alpha_bar_at(t))
        return r.clamp(min=1e-300).log()

    return classifier


def class_log_posterior(x: torch.Tensor, k: int) -> torch.Tensor:
    """log p(y = k | x0) under the mixture, per sample."""
    _, r = MIXTURE.log_prob_noised(x, torch.ones(len(x), dtype=F64))
    return r[:, k].clamp(min=1e-300).log()


@pytest.mark.parametrize("kind", ["classifier-free", "classifier"])
def test_guidance_moves_samples_toward_the_requested_class(kind):
    """w = 3 (s = 3) sharpens p(x | y) toward p(x | y) p(y | x)^w: samples for class 0 must lie measurably
    deeper in class 0 than those of w = 0 from the same noise, by the mean of log p(y = 0 | x0)."""
    s = NoiseSchedule.cosine(1000)
    d = GaussianDiffusion(s).respace(50)
    oracle = ClassConditionalOracle(s)
    n = 2000
    x_T = torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    y = torch.zeros(n, dtype=torch.long)

    def guided(scale):
        if kind == "classifier-free":
            return ClassifierFreeGuidance(oracle, scale, [ClassLabel(2)])
        return ClassifierGuidance(lambda x_t, t: oracle(x_t, t, torch.full_like(t, 2)), bayes_classifier(s), d, scale,
                                  mode="eps")

    plain = class_log_posterior(sample(guided(0.0), d, (n, 2), "ddim", x_T=x_T, progress=False, y=y), 0)
    strong = class_log_posterior(sample(guided(3.0), d, (n, 2), "ddim", x_T=x_T, progress=False, y=y), 0)
    gain = strong - plain  # paired by x_T
    # The mean gain must exceed 5 standard errors of a mean of n paired differences.
    assert gain.mean().item() > 5 * gain.std().item() / math.sqrt(n), (gain.mean().item(), gain.std().item())
    assert plain.exp().mean() < strong.exp().mean()
