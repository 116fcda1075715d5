"""The systems the peers benchmark knows, by the short name the command line uses."""

from __future__ import annotations

__all__ = ["BUILTIN", "DEFAULT"]

BUILTIN = {
    "pt-files": "pydata.peers.systems.baselines:PtFiles",
    "npy-files": "pydata.peers.systems.baselines:NpyFiles",
    "memmap-sample": "pydata.peers.systems.baselines:MemmapPerSample",
    "memmap-batched": "pydata.peers.systems.baselines:MemmapBatched",
    "mosaic": "pydata.peers.systems.mosaic_peer:MosaicStreaming",
    "litdata": "pydata.peers.systems.litdata_peer:LitData",
    "webdataset": "pydata.peers.systems.wds_peer:WebDataset",
    "pydata-dataloader": "pydata.peers.systems.native:MappedDataLoader",
    "pydata-loader": "pydata.peers.systems.native:MappedLoader",
    "pydata-dataloader-int8": "pydata.peers.systems.native:MappedDataLoaderInt8",
    "pydata-loader-int8": "pydata.peers.systems.native:MappedLoaderInt8",
    "pydata-streaming": "pydata.peers.systems.native:StreamingDirect",
    "pydata-streaming-loader": "pydata.peers.systems.native:StreamingLoader",
    "pydata-dali": "pydata.peers.systems.native:DaliLoader",
}
DEFAULT = tuple(BUILTIN)
