"""Training: the run configs, the trainers sharing one optimisation step, checkpoints, and loading a run."""

from .checkpoint import list_checkpoints, load_checkpoint_config, resolve_checkpoint
from .classifier import load_noisy_classifier, train_noisy_classifier
from .config import ClassifierTrainConfig, RunConfig, TrainConfig, describe, load_config, save_config
from .control import Logger, NullLogger, TrainResult
from .files import atomic_write
from .loop import OptimConfig, Optimization, resolve_device
from .run import Trained, load_trained
from .trainer import Trainer

__all__ = [
    "ClassifierTrainConfig",
    "Logger",
    "NullLogger",
    "OptimConfig",
    "Optimization",
    "RunConfig",
    "TrainConfig",
    "TrainResult",
    "Trained",
    "Trainer",
    "atomic_write",
    "describe",
    "list_checkpoints",
    "load_checkpoint_config",
    "load_config",
    "load_noisy_classifier",
    "load_trained",
    "resolve_checkpoint",
    "resolve_device",
    "save_config",
    "train_noisy_classifier",
]
