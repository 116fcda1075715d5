#pragma once
/// Tensor codecs: encode an n-dimensional array into a self-describing, versioned blob and
/// decode it back into caller-provided memory. Lossless codecs (`raw`, `lz4`, `shuffle+lz4`)
/// take any numeric dtype; quantised codecs (`int8`, `fp8`, and their `+lz4` variants) take
/// float32, float16 and bfloat16 and store one float32 scale per channel (axis 0 when
/// ndim >= 2, else one for the whole array). Decoding validates the whole header before it
/// touches memory, so a damaged blob raises CorruptDataError and never reads or writes out of
/// bounds. All functions are thread-safe (scratch buffers are thread-local).
///
/// Blob layout, version 1. Little-endian throughout; n = ndim, k = scale count.
///
///   offset        size  field
///   0             4     magic "PDCB" (0x50 0x44 0x43 0x42)
///   4             1     format version (1)
///   5             1     codec id: 0 raw, 1 lz4, 2 shuffle+lz4, 3 int8, 4 int8+lz4, 5 fp8,
///                       6 fp8+lz4
///   6             1     dtype code: 0 bool, 1 int8, 2 uint8, 3 int16, 4 uint16, 5 int32,
///                       6 uint32, 7 int64, 8 uint64, 9 float16, 10 bfloat16, 11 float32,
///                       12 float64, 13 complex64, 14 complex128
///   7             1     ndim n (0..64)
///   8             8     uint64 raw_nbytes: product(shape) * itemsize, the decoded size
///   16            8     uint64 payload_nbytes
///   24            4     uint32 k, the number of scales: 0 for lossless codecs; for quantised
///                       ones shape[0] when n >= 2, else 1
///   28            4     uint32 reserved, 0
///   32            8*n   uint64 shape[n] (the non-zero dimensions' product * itemsize must be
///                       below 2^63, numpy's limit)
///   32+8n         4*k   float32 scales[k] (finite, >= 0; channel c is elements
///                       [c*inner, (c+1)*inner) of the C-order array, inner = size / shape[0])
///   32+8n+4k      4     uint32 CRC-32C (core/checksum.hpp, seed 0) of bytes [0, 32+8n+4k)
///   36+8n+4k      ...   payload, payload_nbytes bytes; the blob ends exactly there
///
/// Payloads: raw: the C-order array bytes. lz4: one LZ4 block of the array bytes.
/// shuffle+lz4: one LZ4 block of the byte-shuffled array (byte j of every element, for j in
/// [0, itemsize), element order within each group). int8: one int8 per element, two's
/// complement. fp8: one FP8 E4M3 byte per element. `+lz4`: one LZ4 block of those bytes.
/// The lz4 block format caps an lz4 codec's input at LZ4_MAX_INPUT_SIZE (2,113,929,216 bytes).
///
/// Quantisation, per channel c with m_c = max |x| over the channel:
///   int8: s_c = m_c / 127 rounded up to float32; q = round_half_even(x / s_c) in [-127, 127];
///         decoded x^ = q * s_c rounded once (nearest even) to the output dtype.
///         Bound: |x - x^| <= s_c / 2 + r(x^).
///   fp8:  s_c = m_c / 448 rounded up to float32; y = x / s_c is rounded to E4M3 (bias 7,
///         3 mantissa bits, no infinities, largest 448) to nearest even; x^ = e4m3(y) * s_c
///         rounded once to the output dtype.
///         Bound: |x - x^| <= 2^-4 * |x|        when |x| >= 2^-6 * s_c (E4M3 normal range),
///                |x - x^| <= 2^-10 * s_c       when |x| <  2^-6 * s_c (subnormal range),
///                plus r(x^).
///   r(x^) is the final rounding to the output dtype: at most 2^-p * |x^| + d, with p = 24,
///   d = 2^-150 for float32; p = 11, d = 2^-25 for float16; p = 8, d = 2^-134 for bfloat16.
///   x / s_c is computed in double, whose rounding adds at most 2^-46 * s_c (int8) or
///   2^-53 * |x| (fp8) to these bounds. s_c is never below 2^-149 when m_c > 0; an all-zero
///   channel has s_c = 0 and decodes to zeros. Decoded values saturate at the dtype's largest
///   finite value, never infinity. Non-finite input raises FormatError.
///   numpy has no bfloat16: its data travels as uint16 bit patterns, and decoding a bfloat16
///   blob yields uint16 (or int16) bit patterns.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/span.hpp"

namespace pydata {

// ---------------------------------------------------------------------------------------------
// Names and codes
// ---------------------------------------------------------------------------------------------

/// A codec id as stored in byte 5 of a blob.
enum class Codec : std::uint8_t {
  kRaw = 0,
  kLz4 = 1,
  kShuffleLz4 = 2,
  kInt8 = 3,
  kInt8Lz4 = 4,
  kFp8 = 5,
  kFp8Lz4 = 6,
};

/// An element type as stored in byte 6 of a blob.
enum class DType : std::uint8_t {
  kBool = 0,
  kInt8 = 1,
  kUint8 = 2,
  kInt16 = 3,
  kUint16 = 4,
  kInt32 = 5,
  kUint32 = 6,
  kInt64 = 7,
  kUint64 = 8,
  kFloat16 = 9,
  kBfloat16 = 10,
  kFloat32 = 11,
  kFloat64 = 12,
  kComplex64 = 13,
  kComplex128 = 14,
};

/// The blob format version this build writes and reads.
inline constexpr std::uint8_t kBlobVersion = 1;
/// The largest ndim a blob may have (numpy's own limit).
inline constexpr std::size_t kMaxNdim = 64;

/// Every codec name, in id order: "raw", "lz4", "shuffle+lz4", "int8", "int8+lz4", "fp8",
/// "fp8+lz4".
[[nodiscard]] std::vector<std::string> codec_names();
/// The codec called `name`; throws FormatError listing the known names.
[[nodiscard]] Codec codec_from_name(std::string_view name);
/// The name of `codec`, e.g. "int8+lz4".
[[nodiscard]] const char* codec_name(Codec codec) noexcept;

/// The numpy-style name of `dtype`, e.g. "float16", "bfloat16".
[[nodiscard]] const char* dtype_name(DType dtype) noexcept;
/// Bytes per element of `dtype`.
[[nodiscard]] std::size_t dtype_itemsize(DType dtype) noexcept;
/// The numpy array-interface type string that holds `dtype` ("<f2"; "<u2" for bfloat16).
[[nodiscard]] const char* dtype_typestr(DType dtype) noexcept;
/// The dtype of an array whose numpy type string is `typestr` ("<f4", "|u1"), relabelled as
/// `name` when `name` is not empty. The only relabelling allowed is "bfloat16" over uint16 or
/// int16 bits. Throws FormatError for unsupported, big-endian or mismatched dtypes.
[[nodiscard]] DType resolve_dtype(std::string_view typestr, std::string_view name = {});

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/// A C-contiguous array owned by the caller: element type, shape and its bytes.
struct TensorRef {
  DType dtype = DType::kUint8;       ///< element type (bfloat16: 16-bit patterns)
  std::vector<std::uint64_t> shape;  ///< C-order shape; empty for a 0-d array
  ByteSpan data;                     ///< product(shape) * itemsize bytes
};

/// An upper bound on the size of `encode_into(codec, tensor, ...)`'s blob. Throws FormatError
/// if `codec` cannot take `tensor` (dtype, size vs shape, the lz4 input limit).
[[nodiscard]] std::size_t encode_bound(Codec codec, const TensorRef& tensor);

/// Encodes `tensor` into `dst` (at least `encode_bound` bytes) and returns the blob's size.
/// Throws FormatError for input `codec` cannot take, including non-finite values for the
/// quantised codecs (the message names the codec and the element index).
[[nodiscard]] std::size_t encode_into(Codec codec, const TensorRef& tensor, MutableByteSpan dst);

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// A validated blob header.
struct BlobInfo {
  std::uint8_t version = 0;          ///< format version (byte 4)
  Codec codec = Codec::kRaw;         ///< codec id (byte 5)
  DType dtype = DType::kUint8;       ///< dtype code (byte 6)
  std::vector<std::uint64_t> shape;  ///< the decoded array's shape
  std::uint64_t raw_nbytes = 0;      ///< decoded size in bytes
  std::uint64_t payload_nbytes = 0;  ///< stored payload size in bytes
  std::uint64_t blob_nbytes = 0;     ///< whole blob, header included
  std::uint32_t scale_count = 0;     ///< float32 scales stored (quantised codecs)
  std::size_t scales_offset = 0;     ///< byte offset of scales[0] in the blob
  std::size_t payload_offset = 0;    ///< byte offset of the payload in the blob
};

/// Parses and validates `blob`'s header (magic, version, header CRC, codec, dtype, ndim,
/// shape vs raw size, scales, payload size vs blob size). Reads nothing outside `blob`.
/// Throws CorruptDataError naming the field, byte offset, and expected vs found values.
[[nodiscard]] BlobInfo read_blob_info(ByteSpan blob);

/// Checks that a destination of `dtype` and `shape` can receive `info`'s array: the same
/// shape and dtype (uint16 or int16 for bfloat16). Throws FormatError naming `what` and both.
void check_destination(const BlobInfo& info, DType dtype, const std::vector<std::uint64_t>& shape,
                       const std::string& what);

/// Decodes `blob`, whose header `info` came from `read_blob_info(blob)`, into `dst`
/// (exactly `info.raw_nbytes` bytes, else FormatError). Throws CorruptDataError for a damaged
/// payload; `dst` may then hold partial output.
void decode_into(ByteSpan blob, const BlobInfo& info, MutableByteSpan dst);

/// Decodes blob i into row i of `dst`, an array of `dtype` and `shape` ==
/// (blobs.size(), *sample_shape). Every header is validated before any row is written; errors
/// name the blob index. Runs on `ThreadPool::shared()` with up to `threads` threads
/// (the caller resolves the default, as for gather).
void decode_batch(const std::vector<ByteSpan>& blobs, DType dtype,
                  const std::vector<std::uint64_t>& shape, MutableByteSpan dst,
                  std::size_t threads);

/// Names blob i in `decode_batch`'s errors, e.g. "section 2 ('train-3.bin') row 17". Called
/// only when blob i fails, so it costs nothing on the decoding path.
using BlobLabel = std::function<std::string(std::size_t)>;

/// `decode_batch` whose errors name blob i by `label(i)` instead of "blob i": a damaged blob's
/// CorruptDataError reads "<label>: <codec problem>", a misfit FormatError names
/// "out[i] (<label>)".
void decode_batch(const std::vector<ByteSpan>& blobs, DType dtype,
                  const std::vector<std::uint64_t>& shape, MutableByteSpan dst,
                  std::size_t threads, const BlobLabel& label);

/// Blobs of one dtype and ndim but varying shapes, planned to be decoded back to back into one
/// flat buffer (a ragged batch: e.g. token sequences of different lengths).
struct RaggedPlan {
  std::size_t ndim = 0;                    ///< every blob's ndim
  std::vector<ByteSpan> blobs;             ///< the blobs, as validated (caller's memory)
  std::vector<BlobInfo> infos;             ///< blob i's validated header
  std::vector<std::uint64_t> byte_offsets; ///< blob i decodes to [byte_offsets[i], [i + 1])
};

/// Validates every header of `blobs` and lays their decoded arrays out back to back. Every blob
/// must hold `dtype` (uint16 or int16 for bfloat16) and have `ndim` dimensions (no value: the
/// first blob's; 1 when there are no blobs). Throws CorruptDataError ("<label>: <problem>") for
/// a damaged header, FormatError naming the blob for another dtype or ndim. `label` may be null
/// ("blob i").
[[nodiscard]] RaggedPlan plan_ragged(const std::vector<ByteSpan>& blobs, DType dtype,
                                     std::optional<std::size_t> ndim, const BlobLabel* label);

/// Decodes the plan's blob i into `dst` at `plan.byte_offsets[i]`, on up to `threads` threads of
/// the shared pool. `dst` must be exactly `plan.byte_offsets.back()` bytes (else FormatError); a
/// damaged payload throws CorruptDataError naming the blob (`dst` may then hold partial output).
void decode_ragged(const RaggedPlan& plan, MutableByteSpan dst, std::size_t threads,
                   const BlobLabel* label);

// ---------------------------------------------------------------------------------------------
// Error report
// ---------------------------------------------------------------------------------------------

/// The error of one encode/decode round trip.
struct QuantizationReport {
  double max_abs = 0;           ///< max |x - x^|
  double rel_l2 = 0;            ///< ||x - x^||_2 / ||x||_2, 0 when ||x|| == 0
  std::size_t blob_nbytes = 0;  ///< size of the encoded blob
};

/// Encodes `tensor` with `codec`, decodes it again and measures the difference (0 for the
/// lossless codecs). Throws what `encode_into` throws.
[[nodiscard]] QuantizationReport quantization_error(Codec codec, const TensorRef& tensor);

}  // namespace pydata
