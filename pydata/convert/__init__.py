"""Converters from common sources into pydata datasets, as used by ``pydata convert``.

- :func:`convert_sample_files`: a folder of per-sample ``.npy`` / ``.pt`` files;
- :func:`convert_arrays`: whole ``.npy`` arrays with a leading sample dimension;
- :func:`convert_image_folder`: an image folder with one sub-folder per class (needs Pillow);
- :func:`convert_cifar10`: the CIFAR-10 python archive (``cifar-10-python.tar.gz``).

All of them write through :class:`pydata.ShardWriter` and can split the work over processes
(``workers=N``), each writing a partition that :func:`pydata.merge_index` joins at the end.
"""

from __future__ import annotations

from pydata.convert.arrays import convert_arrays
from pydata.convert.cifar10 import convert_cifar10
from pydata.convert.images import convert_image_folder
from pydata.convert.samples import convert_sample_files

__all__ = ["convert_arrays", "convert_cifar10", "convert_image_folder", "convert_sample_files"]
