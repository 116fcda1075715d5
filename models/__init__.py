"""Models and the training loop that consume pydata datasets (installed as ``pydata.models``)."""

from __future__ import annotations

from .autoencoder import AutoEncoder
from .resnet import ResNet

__all__ = ["AutoEncoder", "ResNet"]
