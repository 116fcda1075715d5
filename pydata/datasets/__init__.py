"""Datasets over pydata shards: memory-mapped (local) and streaming (remote), and the pure
functions that order and partition their samples (:mod:`pydata.datasets.order`), and a seeded
train/validation split (:mod:`pydata.datasets.split`, which needs no torch)."""

from pydata.datasets.split import DatasetSplit, split_dataset

__all__ = ["DatasetSplit", "split_dataset"]
