"""Guidance trades diversity for fidelity: the classifier's accuracy and FID of guided digits.

    python bench/guidance.py [--n 1000] [--doc docs/guidance.md]

Trains the main job's network class-conditionally with label dropout (p_uncond = 0.1) and a
noise-aware classifier, then samples ``--n`` digits (DDIM, 50 steps, classes balanced) with
classifier-free guidance at w = 0, 1, 3 and with classifier guidance at s = 0, 1, 5 on the same
network's unconditional branch (the null label). Each row: the domain classifier's accuracy on
the requested labels, and FID / precision / recall against the training set.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from _doc import write_table

from gaussdiff.conditioning import ClassLabel, ClassifierFreeGuidance, ClassifierGuidance, ConditioningConfig
from gaussdiff.data import load_data, to_uint8
from gaussdiff.evaluation import evaluate_quality
from gaussdiff.samplers import sample
from gaussdiff.training import ClassifierTrainConfig, RunConfig, Trainer, load_noisy_classifier, train_noisy_classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--doc", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    reference = load_data("digits")

    config = RunConfig(conditioning=ConditioningConfig(class_conditional=True, p_uncond=0.1))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        trainer = Trainer(config, Path(tmp) / "run", progress=False)
        trainer.run()
        print(f"diffusion model: {time.perf_counter() - start:.0f} s", flush=True)
        start = time.perf_counter()
        clf_config = ClassifierTrainConfig(device=str(trainer.device))
        accuracy = train_noisy_classifier(clf_config, Path(tmp) / "clf", progress=False)
        classifier, _ = load_noisy_classifier(Path(tmp) / "clf")
        print(f"classifier: {time.perf_counter() - start:.0f} s, held-out accuracy {accuracy}", flush=True)
    model, diffusion = trainer.ema_model.eval(), trainer.diffusion.respace(50)
    device = next(model.parameters()).device
    classifier = classifier.to(device)
    labels = torch.arange(args.n) % 10
    LABELS = [ClassLabel(10)]

    def unconditional(x_t, t):
        return model(x_t, t)  # no label: the null label, the unconditional branch

    settings = {
        ("classifier-free", 0.0): ClassifierFreeGuidance(model, 0.0, LABELS),
        ("classifier-free", 1.0): ClassifierFreeGuidance(model, 1.0, LABELS),
        ("classifier-free", 3.0): ClassifierFreeGuidance(model, 3.0, LABELS),
        ("classifier", 0.0): ClassifierGuidance(unconditional, classifier, diffusion, 0.0, mode="eps"),
        ("classifier", 1.0): ClassifierGuidance(unconditional, classifier, diffusion, 1.0, mode="eps"),
        ("classifier", 5.0): ClassifierGuidance(unconditional, classifier, diffusion, 5.0, mode="eps"),
    }
    rows = []
    for (kind, scale), guided in settings.items():
        images = []
        g = torch.Generator(device).manual_seed(0)
        for i in range(0, args.n, 250):
            y = labels[i : i + 250].to(device)
            x = sample(guided, diffusion, (len(y), 1, 8, 8), sampler="ddim", generator=g, clip_denoised=True,
                       progress=False, device=device, y=y)
            images.append(to_uint8(x).cpu())
        q = evaluate_quality(torch.cat(images), "digits", reference, labels=labels)
        rows.append((kind, scale, q.accuracy, q.fid, q.precision, q.recall))
        print(rows[-1], flush=True)

    table = [
        f"| guidance (digits, DDIM-50, {args.n} samples) | scale | classifier accuracy | FID | precision | recall |",
        "|---|---|---|---|---|---|",
    ]
    for kind, scale, acc, fid, p, r in rows:
        name = "w" if kind == "classifier-free" else "s"
        table.append(f"| {kind} | {name} = {scale:g} | {acc:.3f} | {fid:.2f} | {p:.3f} | {r:.3f} |")
    text = "\n".join(table)
    print("\n" + text)
    if args.doc is not None:
        write_table(args.doc, "guidance-table", text)


if __name__ == "__main__":
    main()
