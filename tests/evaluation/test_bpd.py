"""The likelihood of a conditional model is measured given each image's own conditions."""

import torch

import gaussdiff.evaluation.bpd as bpd
from gaussdiff.data import load_data
from gaussdiff.diffusion.likelihood import OdeLikelihood


def test_the_ode_likelihood_is_given_the_labels(conditional_trained, monkeypatch):
    held = load_data("digits", "test")
    seen = []

    def spy(model, diffusion, x0, **kwargs):
        seen.append(kwargs["y"])
        # The model it is handed takes the labels too: call it once as the ODE would.
        model(x0, torch.full((len(x0),), 10.5, dtype=x0.dtype), y=kwargs["y"])
        return OdeLikelihood(torch.zeros(len(x0)), torch.ones(len(x0)), 1)

    monkeypatch.setattr(bpd, "ode_likelihood", spy)
    result = bpd.evaluate_ode(conditional_trained, held.images[:6], {"y": held.labels[:6]}, batch_size=4)
    assert [y.tolist() for y in seen] == [held.labels[:4].tolist(), held.labels[4:6].tolist()]
    assert result["ode_bpd"] == 1.0 and result["ode_bpd_stderr"] == 0.0


def test_the_bound_is_given_the_labels(conditional_trained):
    held = load_data("digits", "test")
    images, labels = held.images[:4], held.labels[:4]
    given = bpd.evaluate_bpd(conditional_trained, images, {"y": labels}, steps=3, progress=False)
    other = bpd.evaluate_bpd(conditional_trained, images, {"y": (labels + 1) % 10}, steps=3, progress=False)
    assert given.n == 4 and given.steps == 3 and given.bpd != other.bpd
