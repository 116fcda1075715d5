"""
pydata's compiled core: ring buffer, memory-mapped files, multi-threaded batch gather, tensor codecs and checksums. Heavy calls release the GIL. Import names from `pydata`.
"""
from __future__ import annotations
import collections.abc
import numpy
import numpy.typing
import os
import types
import typing
import typing_extensions
__all__: list[str] = ['CODECS', 'FileReader', 'FixedSections', 'IndexedSections', 'MappedFile', 'RingBuffer', 'blob_info', 'checksum', 'decode', 'decode_batch', 'encode', 'gather_ranges', 'gather_rows', 'quantization_error']
class RingBuffer:
    """
    A bounded lock-free multi-producer multi-consumer queue of uint64 tokens.
    
    Holds exactly `capacity` tokens (not rounded up); every pushed token is popped exactly once.
    Blocking calls release the GIL, wait in slices of at most 20 ms and run signal handlers between
    them (Ctrl-C raises KeyboardInterrupt in the main thread). `timeout` is in seconds, None for no
    limit; running out raises pydata.WaitTimeoutError (a TimeoutError).
    
    Close contract: `close()` wakes every waiter. Then pushes raise pydata.ClosedError; pops return
    the tokens left and raise ClosedError once drained: that is how consumers see the end.
    """
    def __init__(self, capacity: typing.SupportsInt | typing.SupportsIndex) -> None:
        """
        An empty ring for `capacity` tokens. Raises ValueError unless 1 <= capacity <= 2**32.
        """
    def __len__(self) -> int:
        """
        Tokens in the ring; exact only when no call is in flight.
        """
    def __repr__(self) -> str:
        ...
    def close(self) -> None:
        """
        Ends the stream and wakes every waiter: pushes raise ClosedError from now on; pops drain what is left, then raise ClosedError. Idempotent.
        """
    def pop(self, timeout: typing.SupportsFloat | typing.SupportsIndex | None = None) -> int:
        """
        Takes the oldest token, waiting up to `timeout` seconds for one.
        Raises ClosedError (closed and drained), WaitTimeoutError, KeyboardInterrupt.
        """
    def pop_many(self, out: numpy.typing.NDArray[numpy.uint64], timeout: typing.SupportsFloat | typing.SupportsIndex | None = None) -> int:
        """
        Waits up to `timeout` seconds for one token, then takes as many more as are ready, without waiting, up to len(out). Writes them to out[:n] and returns n >= 1.
        `out` must be a writable C-contiguous 1-D uint64 array of length >= 1.
        Raises ClosedError (closed and drained), WaitTimeoutError, KeyboardInterrupt, ValueError, TypeError.
        """
    def push(self, token: typing.SupportsInt | typing.SupportsIndex, timeout: typing.SupportsFloat | typing.SupportsIndex | None = None) -> None:
        """
        Appends `token`, waiting up to `timeout` seconds for room.
        Raises ClosedError (closed before or while waiting), WaitTimeoutError, ValueError (negative timeout), KeyboardInterrupt.
        """
    def push_many(self, tokens: typing.Annotated[numpy.typing.ArrayLike, numpy.uint64], timeout: typing.SupportsFloat | typing.SupportsIndex | None = None) -> None:
        """
        Pushes every token of a 1-D uint64 array in order, waiting for room, all within one `timeout`; the loop runs in C++ without the GIL.
        Raises ClosedError or WaitTimeoutError whose message says how many tokens were pushed (those stay in the ring), KeyboardInterrupt, TypeError (not safely convertible to uint64).
        """
    def try_pop(self) -> int | None:
        """
        Takes the oldest token, or returns None when empty. Never blocks.
        Raises ClosedError when closed and drained.
        """
    def try_push(self, token: typing.SupportsInt | typing.SupportsIndex) -> bool:
        """
        Appends `token` if there is room; returns False when full. Never blocks.
        Raises ClosedError when closed, TypeError unless 0 <= token < 2**64.
        """
    @property
    def _waiters(self) -> int:
        """
        Threads asleep in a blocking call right now (for tests).
        """
    @property
    def capacity(self) -> int:
        """
        Tokens the ring holds when full.
        """
    @property
    def closed(self) -> bool:
        """
        Whether close() has been called.
        """
class MappedFile:
    """
    A memory mapping of a whole file; the file itself is never written.
    
    Views returned by :meth:`view` are zero-copy numpy arrays whose ``base`` is this object, so the
    mapping stays alive while any view does. The mapping is private and copy-on-write where the
    kernel allows it (``copy_on_write``): a writable view's changes stay in this process. Pickles by
    path: a worker process re-opens the file.
    
    Raises:
        FileNotFoundError / PermissionError / IsADirectoryError: the file cannot be opened.
        pydata.CorruptDataError: the file is empty or shorter than ``min_size`` bytes.
    """
    def __init__(self, path: os.PathLike | str | bytes, *, min_size: typing.SupportsInt | typing.SupportsIndex = 0) -> None:
        ...
    def __len__(self) -> int:
        ...
    def __reduce__(self) -> tuple[type, tuple[str]]:
        ...
    def __repr__(self) -> str:
        ...
    def advise(self, advice: str, offset: typing.SupportsInt | typing.SupportsIndex = 0, length: typing.SupportsInt | typing.SupportsIndex | None = None) -> None:
        """
        madvise() a range: 'normal', 'sequential', 'random', 'willneed' or 'dontneed'.
        """
    def prefault(self, offset: typing.SupportsInt | typing.SupportsIndex = 0, length: typing.SupportsInt | typing.SupportsIndex | None = None) -> int:
        """
        Touches every page of the range so it is resident; returns the pages touched.
        """
    def resident_bytes(self, offset: typing.SupportsInt | typing.SupportsIndex = 0, length: typing.SupportsInt | typing.SupportsIndex | None = None) -> int:
        """
        Bytes of the range resident in the page cache now (mincore), for diagnostics.
        """
    def view(self, offset: typing.SupportsInt | typing.SupportsIndex = 0, length: typing.SupportsInt | typing.SupportsIndex | None = None, *, dtype: typing.Any = 'uint8', shape: typing.Any = None, writable: bool = False) -> numpy.ndarray:
        """
        A zero-copy numpy view of bytes [offset, offset + length), read-only unless ``writable``.
        
        Args:
            offset: First byte.
            length: Bytes to view; by default ``prod(shape) * itemsize`` or the rest of the file.
            dtype: numpy dtype of the view (``"<f2"`` etc. for explicit byte order).
            shape: Shape of the view; by default one dimension.
            writable: Allow writes through the view: they copy the touched pages privately for this
                process and never reach the file (needs ``copy_on_write``).
        
        Raises:
            IndexError: the range lies past the end of the file (names the file and range).
            pydata.FormatError: length and shape disagree, length is not whole items, or ``writable``
                without a copy-on-write mapping.
        """
    @property
    def copy_on_write(self) -> bool:
        """
        Whether writable views are possible (changes stay private).
        """
    @property
    def path(self) -> str:
        """
        The path the file was opened with.
        """
    @property
    def size(self) -> int:
        """
        File size in bytes.
        """
class FileReader:
    """
    Reads byte ranges of several files with plain ``pread`` into one buffer, on the shared thread
    pool with the GIL released. For file systems where reading through a memory mapping is slow
    (NFS, FUSE): each range costs one or a few large reads instead of one page fault per page.
    
    Opens every file read-only at construction and records its size. Pickles by paths: a worker
    process re-opens the files. Use as a context manager, or call :meth:`close`.
    
    Args:
        paths: The files, in file-id order.
    
    Raises:
        FileNotFoundError / PermissionError / IsADirectoryError: a file cannot be opened
            (``filename`` is its path).
    """
    def __enter__(self) -> FileReader:
        ...
    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: types.TracebackType | None) -> None:
        """
        Closes the files.
        """
    def __init__(self, paths: collections.abc.Sequence[os.PathLike | str | bytes]) -> None:
        ...
    def __len__(self) -> int:
        """
        Number of files.
        """
    def __reduce__(self) -> tuple[type, tuple[list[str]]]:
        ...
    def __repr__(self) -> str:
        ...
    def close(self) -> None:
        """
        Closes the files, after any read in flight has finished. Idempotent.
        """
    def read(self, file_ids: numpy.typing.ArrayLike, offsets: numpy.typing.ArrayLike, lengths: numpy.typing.ArrayLike, out: typing_extensions.Buffer | numpy.ndarray, *, threads: typing.SupportsInt | typing.SupportsIndex | None = None) -> int:
        """
        Copies range k, bytes ``[offsets[k], offsets[k] + lengths[k])`` of file ``file_ids[k]``, into
        ``out`` right after range k - 1, so the ranges land back to back from byte 0. Every argument
        is checked before the first read. Returns the total bytes read, ``sum(lengths)``.
        
        Args:
            file_ids: Integer file ids (indices into ``paths``), one per range.
            offsets: Non-negative byte offsets, as many as ``file_ids``.
            lengths: Non-negative byte counts, as many as ``file_ids``.
            out: A writable C-contiguous buffer (numpy array, bytearray, a tensor via ``.numpy()``)
                of at least ``sum(lengths)`` bytes.
            threads: Most threads to use; None means the pool's default. Batches under 1 MiB are
                read on the calling thread.
        
        Raises:
            IndexError: a file id is out of range (names it and its position).
            pydata.CorruptDataError: a range lies past its file's end at open, or the file ended
                early while being read (truncated since open); names the path.
            pydata.FormatError: the arrays differ in length, or ``out`` is too small.
            pydata.ClosedError: the reader is closed.
            OSError: a read failed (``filename`` is the path).
            TypeError / ValueError: an argument is not integers, is negative, or ``out`` is read-only
                or not C-contiguous.
        """
    @property
    def closed(self) -> bool:
        """
        Whether close() has been called.
        """
    @property
    def paths(self) -> list[str]:
        """
        The paths, in file-id order.
        """
    @property
    def sizes(self) -> list[int]:
        """
        Each file's size in bytes at open.
        """
class FixedSections:
    """
    Fixed-size rows in several sections (e.g. one field's section in every shard), addressed by a
    global row index: section 0's rows first. Keeps its sources alive.
    
    Args:
        sources: C-contiguous buffers (numpy arrays, MappedFile views), each whole rows long.
        row_bytes: Bytes per row.
        names: Optional name per section (shard file names) for error messages.
    """
    def __init__(self, sources: collections.abc.Iterable[typing_extensions.Buffer | numpy.ndarray], row_bytes: typing.SupportsInt | typing.SupportsIndex, *, names: collections.abc.Sequence[str] | None = None) -> None:
        ...
    def gather(self, indices: numpy.typing.ArrayLike, out: numpy.ndarray, *, threads: typing.SupportsInt | typing.SupportsIndex | None = None) -> numpy.ndarray:
        """
        Copies row ``indices[i]`` into ``out[i]`` for every i, with the GIL released. ``out`` is any
        C-contiguous writable array of ``len(indices) * row_bytes`` bytes (a torch tensor via ``.numpy()``).
        Every index is checked before any byte moves. Returns ``out``.
        
        Raises:
            IndexError: an index is out of range (names it and its position).
            pydata.FormatError: ``out`` has the wrong number of bytes.
        """
    @property
    def num_sections(self) -> int:
        ...
    @property
    def row_bytes(self) -> int:
        ...
    @property
    def rows(self) -> int:
        ...
class IndexedSections:
    """
    Variable-size rows in several sections, each an ``(offsets, payload)`` pair where ``offsets`` is
    a uint64 array of rows + 1 entries and row r is ``payload[offsets[r]:offsets[r + 1]]``.
    """
    def __init__(self, sections: collections.abc.Iterable[tuple[numpy.ndarray, typing_extensions.Buffer | numpy.ndarray]], *, names: collections.abc.Sequence[str] | None = None) -> None:
        ...
    def decode(self, indices: numpy.typing.ArrayLike, out: numpy.ndarray, *, threads: typing.SupportsInt | typing.SupportsIndex | None = None) -> numpy.ndarray:
        """
        Decodes row ``indices[i]``, a codec blob (see :func:`encode`), straight from its payload into
        ``out[i]`` for every i, on the shared thread pool with the GIL released; no blob is copied
        first. ``out`` is a C-contiguous writable array of shape ``(len(indices), *sample_shape)`` and
        the blobs' stored dtype (uint16 or int16 for bfloat16), e.g. a torch tensor via ``.numpy()``.
        Indices, offsets and every blob header are checked before any row is written. Returns ``out``.
        
        Raises:
            IndexError: an index is out of range (names it and its position).
            pydata.CorruptDataError: a row's offsets decrease or point past its payload, or its blob
                is damaged (names the section, its name and the row, and the codec problem).
            pydata.FormatError: ``out`` does not have one row per index, or a blob's dtype or shape
                differs from a row of ``out``.
        """
    def decode_ragged(self, indices: numpy.typing.ArrayLike, dtype: numpy.dtype[typing.Any], ndim: typing.SupportsInt | typing.SupportsIndex | None = None, *, threads: typing.SupportsInt | typing.SupportsIndex | None = None) -> tuple[numpy.ndarray, numpy.ndarray]:
        """
        Decodes rows ``indices``, codec blobs of ``dtype`` whose shapes vary (e.g. token sequences),
        straight from their payloads and back to back into one new 1-D array, with the GIL released.
        Returns ``(values, shapes)``: the rows' elements in order, and an int64 array
        ``(len(indices), ndim)`` of their shapes. Every row must have ``ndim`` dimensions (None: as many
        as the first row). Every header is checked before any row is decoded. ``dtype`` is the stored
        dtype (uint16 for bfloat16).
        
        Raises:
            IndexError: an index is out of range (names it and its position).
            pydata.CorruptDataError: a row's offsets or blob are damaged (names the section and row).
            pydata.FormatError: a blob's dtype or ndim differs from ``dtype``/``ndim`` (names the row).
            ValueError: ``out`` is read-only or not C-contiguous.
        """
    def gather(self, indices: numpy.typing.ArrayLike, out: numpy.ndarray | None = None, *, threads: typing.SupportsInt | typing.SupportsIndex | None = None) -> tuple[numpy.ndarray, numpy.ndarray]:
        """
        Concatenates the rows named by ``indices``. Returns ``(offsets, payload)``: uint64 offsets of
        ``len(indices) + 1`` entries starting at 0, and the payload (``out`` if given, else a new uint8
        array of exactly the needed size).
        
        Raises:
            IndexError: an index is out of range.
            pydata.CorruptDataError: a row's offsets decrease or point past its payload.
            pydata.FormatError: ``out`` is too small.
        """
    @property
    def num_sections(self) -> int:
        ...
    @property
    def rows(self) -> int:
        ...
def _checksum_hardware_available() -> bool:
    """
    Whether checksum() uses the SSE4.2 crc32 instruction on this CPU.
    """
def _checksum_portable(data: typing_extensions.Buffer | numpy.ndarray, seed: typing.SupportsInt | typing.SupportsIndex = 0) -> int:
    """
    checksum() computed with the portable slicing-by-8 tables (for tests).
    """
def blob_info(blob: typing_extensions.Buffer | numpy.ndarray) -> dict[str, typing.Any]:
    """
    The validated header of a blob: a dict with codec, dtype, shape, raw_nbytes,
    blob_nbytes and version.
    
    Raises:
        CorruptDataError: The header is damaged.
    """
def checksum(data: typing_extensions.Buffer | numpy.ndarray, seed: typing.SupportsInt | typing.SupportsIndex = 0) -> int:
    """
    CRC-32C (Castagnoli) of a bytes-like object, as used by the shard format.
    
    Runs on the SSE4.2 crc32 instruction when the CPU has it; large inputs release the GIL.
    checksum(b'123456789') == 0xE3069283.
    
    Args:
        data: Any C-contiguous bytes-like object.
        seed: The checksum of the preceding bytes, to continue a stream:
            checksum(b, checksum(a)) == checksum(a + b). 0 starts a new one.
    
    Returns:
        The checksum, an int in [0, 2**32).
    """
def decode(blob: typing_extensions.Buffer | numpy.ndarray, out: numpy.ndarray | None = None) -> numpy.ndarray:
    """
    Decodes a blob (any bytes-like object) into a new array or into `out`.
    
    A bfloat16 blob decodes to uint16 bfloat16 bits (`out` may be uint16 or int16).
    
    Args:
        blob: The encoded bytes.
        out: A C-contiguous writable array of the stored shape and dtype.
    
    Returns:
        `out`, or a new array.
    
    Raises:
        CorruptDataError: The blob is damaged or truncated.
        FormatError: `out` has the wrong shape or dtype.
        ValueError: `out` is read-only or not contiguous.
    """
def decode_batch(blobs: collections.abc.Iterable[typing_extensions.Buffer | numpy.ndarray], out: numpy.ndarray, *, threads: typing.SupportsInt | typing.SupportsIndex | None = None) -> None:
    """
    Decodes blobs[i] into out[i] on the shared thread pool, with the GIL released.
    
    Every header is checked before any row is written.
    
    Args:
        blobs: An iterable of bytes-like blobs.
        out: A C-contiguous writable array of shape
            (len(blobs), *sample_shape) and the stored dtype (a tensor via t.numpy()).
        threads: Most threads to use; None means the pool's default.
    
    Raises:
        CorruptDataError: A blob is damaged; the message names its index.
        FormatError: A blob's shape or dtype does not fit `out`.
    """
def encode(array: numpy.ndarray, codec: str, *, dtype: str | None = None) -> bytes:
    """
    Encodes a C-contiguous array into a self-describing blob (layout: docs/format.md).
    
    Args:
        array: Lossless codecs take any bool/int/float/complex dtype; quantised ones
            float32, float16 or bfloat16.
        codec: One of CODECS.
        dtype: 'bfloat16' marks a uint16 array as bfloat16 bits (numpy has no bfloat16).
    
    Returns:
        The blob.
    
    Raises:
        FormatError: Unknown codec, unsupported dtype, or non-finite input to int8/fp8.
        ValueError: The array is not C-contiguous.
    """
def gather_ranges(sections: collections.abc.Iterable[tuple[numpy.ndarray, typing_extensions.Buffer | numpy.ndarray]], indices: numpy.typing.ArrayLike, out: numpy.ndarray | None = None, *, threads: typing.SupportsInt | typing.SupportsIndex | None = None) -> tuple[numpy.ndarray, numpy.ndarray]:
    """
    One-shot :meth:`IndexedSections.gather`.
    """
def gather_rows(sources: collections.abc.Iterable[typing_extensions.Buffer | numpy.ndarray], indices: numpy.typing.ArrayLike, out: numpy.ndarray, *, threads: typing.SupportsInt | typing.SupportsIndex | None = None) -> numpy.ndarray:
    """
    One-shot :meth:`FixedSections.gather`; the row size is ``out.nbytes // out.shape[0]`` and
    ``out.shape[0]`` must equal ``len(indices)``. Returns ``out``.
    """
def quantization_error(array: numpy.ndarray, codec: str, *, dtype: str | None = None) -> dict[str, typing.Any]:
    """
    Encodes and decodes `array` and reports the round trip's error.
    
    Returns:
        A dict with max_abs (max |x - x^|), rel_l2 (||x - x^|| / ||x||, 0 when ||x|| == 0)
        and blob_nbytes. Both errors are 0 for the lossless codecs.
    
    Raises:
        FormatError: As for encode.
    """
CODECS: tuple = ('raw', 'lz4', 'shuffle+lz4', 'int8', 'int8+lz4', 'fp8', 'fp8+lz4')
