"""pydata side by side with MosaicML Streaming, LitData, WebDataset and the usual baselines.

    python benchmarks/peers.py [--samples N] [--settings hot cold s3] [--systems ...] [--out DIR]

A thin entry point: the harness lives in the library (``pydata.peers``) so that
``pydata bench --peers`` works from an installed package. See benchmarks/README.md.
"""

from __future__ import annotations

import sys

from pydata.peers import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
