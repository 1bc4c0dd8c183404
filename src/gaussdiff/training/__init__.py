"""Training: the run configs, the trainers sharing one optimisation step, checkpoints, and loading a run."""

from .autoencoder import AutoencoderTrainer
from .batches import DataOrder, stream_batches
from .checkpoint import list_checkpoints, load_checkpoint_config, resolve_checkpoint, save_checkpoint
from .classifier import load_noisy_classifier, train_noisy_classifier
from .config import (AutoencoderTrainConfig, Bookkeeping, ClassifierTrainConfig, RunConfig, TrainConfig, describe,
                     load_config, save_config)
from .control import Logger, NullLogger, Stopped, TrainResult, end_of_step, resume_checkpoint
from .distributed import Distributed
from .files import atomic_write
from .loop import OptimConfig, Optimization, resolve_compile, resolve_device, resolve_precision
from .run import Trained, load_trained
from .trainer import Trainer

__all__ = [
    "AutoencoderTrainConfig",
    "AutoencoderTrainer",
    "Bookkeeping",
    "ClassifierTrainConfig",
    "DataOrder",
    "Distributed",
    "Logger",
    "NullLogger",
    "OptimConfig",
    "Optimization",
    "RunConfig",
    "Stopped",
    "TrainConfig",
    "TrainResult",
    "Trained",
    "Trainer",
    "atomic_write",
    "describe",
    "end_of_step",
    "list_checkpoints",
    "load_checkpoint_config",
    "load_config",
    "load_noisy_classifier",
    "load_trained",
    "resolve_checkpoint",
    "resolve_compile",
    "resolve_device",
    "resolve_precision",
    "resume_checkpoint",
    "save_checkpoint",
    "save_config",
    "stream_batches",
    "train_noisy_classifier",
]
