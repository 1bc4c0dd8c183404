"""The likelihood of a conditional model is measured given each image's own conditions, and reported as a mean with its
standard error."""

import pytest
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


def test_the_bound_reports_its_mean_and_standard_error(conditional_trained):
    """bpd is the mean of the per-image bounds and bpd_stderr their standard error, std / sqrt(n): recomputed here
    from the diffusion's own per-image bound, with the same seed and so the same draws."""
    import math

    held = load_data("digits", "test")
    images, labels = held.images[:6], held.labels[:6]
    report = bpd.evaluate_bpd(conditional_trained, images, {"y": labels}, steps=3, progress=False)
    t = conditional_trained
    like = t.diffusion.respace(3).bpd(t.model, t.x0_of(images), clip_denoised=t.clip_denoised,
                                      generator=torch.Generator(t.device).manual_seed(0), progress=False,
                                      y=labels.to(t.device))
    total = like.total.double()
    assert report.bpd == pytest.approx(float(total.mean()), rel=1e-12)
    assert report.bpd_stderr == pytest.approx(float(total.std()) / math.sqrt(6), rel=1e-9)


def test_the_bound_draws_one_progress_bar(conditional_trained, capsys):
    """Over the batches when there are several (2 of 3 images here), else over the one batch's 3 steps: never a bar
    nested in another, whose cursor moves (ESC [A) garble a log file."""
    held = load_data("digits", "test")
    for batch_size, bar in ((2, "0/2 ["), (4, "0/3 [")):  # the bar opens at 0 of its total
        bpd.evaluate_bpd(conditional_trained, held.images[:3], {"y": held.labels[:3]}, steps=3, batch_size=batch_size)
        err = capsys.readouterr().err
        assert bar in err and "\x1b[A" not in err, (batch_size, err)


def test_the_reported_parts_add_up_to_the_bound_and_the_rate_leaves_out_the_decoder(conditional_trained):
    """The bound's decomposition (Ho et al. 2020 Eq. 5): bpd = L_0 + sum_{t>=1} L_{t-1} + L_T, averaged over the
    images, with L_0 the per-step term at index 0 (the decoder) and the sum over the others; the rate of
    progressive coding once the noisiest latent is known is L_T alone, and at t = 0 it is everything but the
    decoder's L_0 (Ho et al. 2020 §4.3: rate 1.78 + distortion L_0 1.97 = 3.75 bits/dim). The terms are float32
    sums (the model's dtype): equal to about 1e-7, so 1e-6 relative; leaving a step's term out of a part moves it
    by far more."""
    held = load_data("digits", "test")
    report = bpd.evaluate_bpd(conditional_trained, held.images[:4], {"y": held.labels[:4]}, steps=3, progress=False)
    assert report.l0 + report.sum_l_t + report.prior == pytest.approx(report.bpd, rel=1e-6)
    assert report.l0 == pytest.approx(report.vb_per_step[0], rel=1e-6)
    assert report.sum_l_t == pytest.approx(sum(report.vb_per_step[1:]), rel=1e-6)
    assert report.rate[0] == pytest.approx(report.prior + report.sum_l_t, rel=1e-6)
    assert report.rate[-1] == pytest.approx(report.prior, rel=1e-6)
    assert report.l0 > 0 and report.sum_l_t > 0 and report.prior > 0


def test_what_the_bound_cannot_measure_is_refused_naming_it(conditional_trained):
    """One label for four images broadcast silently to all of them; no images and batch_size 0 failed in torch.cat
    and a ZeroDivisionError."""
    images = load_data("digits", "test").images[:4]
    for call in (bpd.evaluate_bpd, bpd.evaluate_ode):
        with pytest.raises(ValueError, match="the condition y has 1 rows for 4 images"):
            call(conditional_trained, images, {"y": torch.zeros(1, dtype=torch.long)})
    with pytest.raises(ValueError, match="at least one image and batch_size >= 1, got 0 and 256"):
        bpd.evaluate_bpd(conditional_trained, images[:0], progress=False)
    with pytest.raises(ValueError, match="at least one image and batch_size >= 1, got 4 and 0"):
        bpd.evaluate_ode(conditional_trained, images, batch_size=0)


def test_the_rate_distortion_table_runs_from_the_noisiest_step_to_t_zero():
    """Rows evenly spread over the steps' indices, noisiest first, both ends included: with 10 steps and 4 rows,
    indices 9, 6, 3, 0. One row (a ZeroDivisionError before) cannot hold both ends and is refused."""
    steps = list(range(0, 100, 10))
    report = bpd.BpdReport(n=1, steps=10, bpd=1.0, bpd_stderr=0.0, l0=0.1, sum_l_t=0.8, prior=0.1, timesteps=steps,
                           vb_per_step=[0.0] * 10, rate=[float(i) for i in range(10)],
                           distortion=[-float(i) for i in range(10)])
    assert bpd.rate_distortion_rows(report, rows=4) == [(90, 9.0, -9.0), (60, 6.0, -6.0), (30, 3.0, -3.0),
                                                        (0, 0.0, -0.0)]
    assert len(bpd.rate_distortion_rows(report, rows=50)) == 10  # no step twice
    with pytest.raises(ValueError, match="rows must be at least 2"):
        bpd.rate_distortion_rows(report, rows=1)
