"""pydata.dali: feed pydata datasets to NVIDIA DALI pipelines (the ``dali`` extra).

``fn.external_source`` sources that read the Loader's batches through the compiled core
(:mod:`pydata.dali.source`), a pipeline factory that adds crop, flip and normalise as DALI ops
on CPU or GPU (:func:`create_pipeline`), and :class:`DALILoader`, which yields dicts of torch
tensors with the Loader's epochs, shares and resume state. The trade-off against
:class:`pydata.Loader`: one more copy of every batch into DALI's buffers, for DALI's operators,
scheduling and GPU augmentations. ``import pydata`` never imports this package; importing it
without DALI raises an ``ImportError`` that says how to install it.
"""

from __future__ import annotations

try:
    import nvidia.dali  # noqa: F401  (only to fail early, with the install command)
except ImportError as exc:
    msg = ('pydata.dali needs NVIDIA DALI, which is not installed: pip install "pydata[dali]" '
           f"(DALI wheels are Linux-only; cause: {exc})")
    raise ImportError(msg) from exc

from pydata.dali.loader import DALILoader
from pydata.dali.pipeline import create_pipeline, output_fields
from pydata.dali.source import Augment, BatchSource, EpochPlan, SampleSource

__all__ = ["Augment", "BatchSource", "DALILoader", "EpochPlan", "SampleSource", "create_pipeline",
           "output_fields"]
