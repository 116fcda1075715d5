"""The stats of a latent cache, as stored in its index metadata under ``latent_cache``.

Kept apart from the build (which needs torch) so that ``pydata inspect`` can read and show them
without importing torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from pydata.errors import FormatError

__all__ = ["METADATA_KEY", "LatentStats"]

METADATA_KEY = "latent_cache"


@dataclass(frozen=True)
class LatentStats:
    """What a latent cache holds and what its codec cost and saved.

    Attributes:
        field: The latent field's name; ``codec``: its codec; ``dtype``: its stored dtype;
            ``shape``: one latent's shape.
        samples: Latents in the cache.
        max_abs: Largest ``|z - z^|`` over every element, ``z`` the encoder's float32 output and
            ``z^`` the latent as read back from the cache.
        rel_l2: ``||z - z^|| / ||z||`` over the whole cache (0 when ``||z|| == 0``).
        nbytes: Bytes of the latent field on disk (offsets tables included, page padding not).
        fp16_nbytes, fp32_nbytes: What the latents take as raw float16 / float32.
        encoder: The encoder's name; ``input_field``: the field it read; ``source``: where the
            source dataset was (None when unknown).
    """

    field: str
    codec: str
    dtype: str
    shape: tuple[int, ...]
    samples: int
    max_abs: float
    rel_l2: float
    nbytes: int
    fp16_nbytes: int
    fp32_nbytes: int
    encoder: str
    input_field: str
    source: str | None

    @property
    def ratio_fp16(self) -> float:
        """``fp16_nbytes / nbytes``: how many times smaller than raw float16."""
        return self.fp16_nbytes / self.nbytes if self.nbytes else math.inf

    @property
    def ratio_fp32(self) -> float:
        """``fp32_nbytes / nbytes``: how many times smaller than raw float32."""
        return self.fp32_nbytes / self.nbytes if self.nbytes else math.inf

    @property
    def bytes_per_sample(self) -> float:
        """Stored latent bytes per sample."""
        return self.nbytes / self.samples if self.samples else 0.0

    def to_json(self) -> dict[str, Any]:
        """The stats as stored under ``metadata["latent_cache"]``, ratios included."""
        return {**asdict(self), "shape": list(self.shape), "ratio_fp16": self.ratio_fp16,
                "ratio_fp32": self.ratio_fp32, "bytes_per_sample": self.bytes_per_sample}

    @classmethod
    def from_json(cls, data: Any, source: str) -> LatentStats:
        """Parses stored stats; ``source`` names the index in errors.

        Raises:
            FormatError: Not an object, or a missing or mistyped key (named).
        """
        missing = list(_PARSE) if not isinstance(data, dict) else [k for k in _PARSE if k not in data]
        if missing:
            msg = f"{source}: metadata '{METADATA_KEY}' must be an object with {missing}"
            raise FormatError(msg)
        try:
            values = {key: parse(data[key]) for key, parse in _PARSE.items()}
        except (TypeError, ValueError) as exc:
            msg = f"{source}: metadata '{METADATA_KEY}': {exc}"
            raise FormatError(msg) from exc
        where = data.get("source")
        return cls(**values, source=None if where is None else str(where))


_PARSE: dict[str, Callable[[Any], Any]] = {
    "field": str, "codec": str, "dtype": str, "shape": lambda v: tuple(int(d) for d in v),
    "samples": int, "max_abs": float, "rel_l2": float, "nbytes": int, "fp16_nbytes": int,
    "fp32_nbytes": int, "encoder": str, "input_field": str,
}
