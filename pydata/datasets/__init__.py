"""Datasets over pydata shards: memory-mapped (local) and streaming (remote), and the pure
functions that order and partition their samples (:mod:`pydata.datasets.order`)."""
