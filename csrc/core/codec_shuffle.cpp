// Byte shuffle for shuffle+lz4: grouping byte j of every element puts the slowly varying
// high bytes of smooth data next to each other, where lz4 finds long matches.
#include <cstring>

#include "core/codec_detail.hpp"

namespace pydata::detail {
namespace {

// A compile-time element size lets the compiler unroll the inner loop and vectorise the
// interleave; the generic loop serves the rare sizes (16-byte complex).
template <std::size_t kSize>
void shuffle_fixed(const std::uint8_t* src, std::size_t count, std::uint8_t* dst) noexcept {
  for (std::size_t i = 0; i < count; ++i) {
    for (std::size_t j = 0; j < kSize; ++j) dst[j * count + i] = src[i * kSize + j];
  }
}

template <std::size_t kSize>
void unshuffle_fixed(const std::uint8_t* src, std::size_t count, std::uint8_t* dst) noexcept {
  for (std::size_t i = 0; i < count; ++i) {
    for (std::size_t j = 0; j < kSize; ++j) dst[i * kSize + j] = src[j * count + i];
  }
}

void shuffle_any(const std::uint8_t* src, std::size_t size, std::size_t count,
                 std::uint8_t* dst) noexcept {
  for (std::size_t j = 0; j < size; ++j) {
    for (std::size_t i = 0; i < count; ++i) dst[j * count + i] = src[i * size + j];
  }
}

void unshuffle_any(const std::uint8_t* src, std::size_t size, std::size_t count,
                   std::uint8_t* dst) noexcept {
  for (std::size_t j = 0; j < size; ++j) {
    for (std::size_t i = 0; i < count; ++i) dst[i * size + j] = src[j * count + i];
  }
}

}  // namespace

namespace {

// One dispatch on the element size for both directions; the fixed sizes get unrolled loops.
template <bool kShuffle>
void permute_bytes(ByteSpan src, std::size_t itemsize, std::uint8_t* dst) noexcept {
  const std::size_t count = src.size / itemsize;
  switch (itemsize) {
    case 1:
      if (src.size != 0) std::memcpy(dst, src.data, src.size);
      return;
    case 2:
      return kShuffle ? shuffle_fixed<2>(src.data, count, dst) : unshuffle_fixed<2>(src.data, count, dst);
    case 4:
      return kShuffle ? shuffle_fixed<4>(src.data, count, dst) : unshuffle_fixed<4>(src.data, count, dst);
    case 8:
      return kShuffle ? shuffle_fixed<8>(src.data, count, dst) : unshuffle_fixed<8>(src.data, count, dst);
    default:
      return kShuffle ? shuffle_any(src.data, itemsize, count, dst)
                      : unshuffle_any(src.data, itemsize, count, dst);
  }
}

}  // namespace

void byte_shuffle(ByteSpan src, std::size_t itemsize, std::uint8_t* dst) noexcept {
  permute_bytes<true>(src, itemsize, dst);
}

void byte_unshuffle(ByteSpan src, std::size_t itemsize, std::uint8_t* dst) noexcept {
  permute_bytes<false>(src, itemsize, dst);
}

}  // namespace pydata::detail
