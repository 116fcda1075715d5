"""pydata.peers: pydata side by side with the loaders people use, on identical data.

``python benchmarks/peers.py`` and ``pydata bench --peers`` run :func:`main`. Every system (the
per-sample and memmap baselines, MosaicML Streaming, LitData, WebDataset, and pydata's own
readers) converts the same :mod:`pydata.peers.workloads` and reads them hot, cold and from a
local S3 server, each run in a subprocess of its own so that one system's threads or memory
cannot skew another's figures. The trade-off: a subprocess per run costs an interpreter start
(and a torch import) per figure, bought for figures that do not depend on run order.
"""

from __future__ import annotations

from pydata.peers.cli import main

__all__ = ["main"]
