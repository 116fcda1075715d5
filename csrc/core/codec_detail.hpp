#pragma once
/// Internals shared by `codec.cpp` (header, dispatch) and the codec family files
/// (`codec_lz4.cpp`, `codec_shuffle.cpp`, `codec_quantize.cpp`). Not part of the core's API.
/// Sizes passed in here have been validated by the caller.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "core/codec.hpp"
#include "core/float_formats.hpp"
#include "core/span.hpp"

namespace pydata::detail {

/// Number of codec ids and dtype codes (ids and codes are 0-based and dense).
inline constexpr std::size_t kCodecCount = 7;
inline constexpr std::size_t kDTypeCount = 15;

/// Whether `c` stores one byte per element plus scales (int8, fp8 and their +lz4 variants).
[[nodiscard]] inline bool is_quantised(Codec c) noexcept { return c >= Codec::kInt8; }
/// Whether `c`'s payload is one LZ4 block.
[[nodiscard]] inline bool uses_lz4(Codec c) noexcept {
  return c != Codec::kRaw && c != Codec::kInt8 && c != Codec::kFp8;
}
/// Whether the quantised codecs take `d`.
[[nodiscard]] inline bool is_quantisable(DType d) noexcept {
  return d == DType::kFloat32 || d == DType::kFloat16 || d == DType::kBfloat16;
}

// ---------------------------------------------------------------------------------------------
// Scratch memory (codec.cpp)
// ---------------------------------------------------------------------------------------------

/// This thread's reusable scratch buffer, grown to at least `bytes` for the lease's lifetime.
/// Buffers above 64 MiB are freed when the lease ends, so one huge blob does not pin memory.
/// Leases do not nest on one thread (std::logic_error if they would).
class ScratchLease {
 public:
  /// Leases this thread's buffer, growing it to at least `bytes`.
  explicit ScratchLease(std::size_t bytes);
  /// Ends the lease; frees the buffer if it is above 64 MiB.
  ~ScratchLease();
  ScratchLease(const ScratchLease&) = delete;
  ScratchLease& operator=(const ScratchLease&) = delete;

  /// The buffer: at least the requested size, contents unspecified.
  [[nodiscard]] std::uint8_t* data() const noexcept { return data_; }

 private:
  std::uint8_t* data_;
};

// ---------------------------------------------------------------------------------------------
// LZ4 block compression (codec_lz4.cpp)
// ---------------------------------------------------------------------------------------------

/// The largest input one LZ4 block may hold (LZ4_MAX_INPUT_SIZE).
[[nodiscard]] std::uint64_t lz4_max_input() noexcept;
/// The largest compressed size of `n` input bytes (n <= lz4_max_input()).
[[nodiscard]] std::size_t lz4_bound(std::size_t n) noexcept;
/// Compresses `src` into `dst` (at least `lz4_bound(src.size)` bytes); returns the size.
[[nodiscard]] std::size_t lz4_compress(ByteSpan src, MutableByteSpan dst);
/// Decompresses the LZ4 block `src` into exactly `dst.size` bytes. Throws CorruptDataError
/// (naming `offset`, the block's byte offset in its blob) if the block is damaged or decodes
/// to any other size.
void lz4_decompress_exact(ByteSpan src, MutableByteSpan dst, std::size_t offset);

// ---------------------------------------------------------------------------------------------
// Byte shuffle (codec_shuffle.cpp)
// ---------------------------------------------------------------------------------------------

/// Writes byte j of every `itemsize`-byte element of `src` to dst[j * count + i].
void byte_shuffle(ByteSpan src, std::size_t itemsize, std::uint8_t* dst) noexcept;
/// The inverse of `byte_shuffle`: dst[i * itemsize + j] = src[j * count + i].
void byte_unshuffle(ByteSpan src, std::size_t itemsize, std::uint8_t* dst) noexcept;

// ---------------------------------------------------------------------------------------------
// Quantisation (codec_quantize.cpp)
// ---------------------------------------------------------------------------------------------

/// The two quantised formats.
enum class QuantKind { kInt8, kFp8 };

/// How a quantised array splits into channels: `count` runs of `inner` elements.
struct Channels {
  std::size_t count = 1;  ///< number of channels (scales)
  std::size_t inner = 0;  ///< elements per channel
};

/// Channels of an array of `shape` with `elements` elements: axis 0 when ndim >= 2, else one.
[[nodiscard]] Channels channels_of(const std::vector<std::uint64_t>& shape,
                                   std::size_t elements) noexcept;

/// Quantises `src` (float32, float16 or bfloat16 elements) per channel: writes `channels.count`
/// little-endian float32 scales to `scales` and one byte per element to `q`. Throws
/// FormatError naming `codec` and the element index for a non-finite value.
void quantize(QuantKind kind, DType dtype, ByteSpan src, Channels channels, std::uint8_t* scales,
              std::uint8_t* q, const char* codec);

/// Dequantises `q` (one byte per element) with the float32 `scales` (little-endian, possibly
/// unaligned) into `dst`, elements of `dtype`, through a 256-entry table per channel.
void dequantize(QuantKind kind, DType dtype, const std::uint8_t* q, const std::uint8_t* scales,
                Channels channels, std::uint8_t* dst) noexcept;

/// Element `i` of an array of float32, float16 or bfloat16 elements at `base`, as float.
[[nodiscard]] inline float load_float(DType dtype, const std::uint8_t* base,
                                      std::size_t i) noexcept {
  if (dtype == DType::kFloat32) {
    float f;
    std::memcpy(&f, base + 4 * i, 4);
    return f;
  }
  std::uint16_t h;
  std::memcpy(&h, base + 2 * i, 2);
  return dtype == DType::kFloat16 ? half_to_float(h) : bfloat16_to_float(h);
}

}  // namespace pydata::detail
