// LZ4 block compression for the lz4 codecs, on the system liblz4.
#include <lz4.h>

#include <climits>
#include <stdexcept>
#include <string>

#include "core/codec_detail.hpp"
#include "core/errors.hpp"

namespace pydata::detail {

std::uint64_t lz4_max_input() noexcept { return LZ4_MAX_INPUT_SIZE; }

std::size_t lz4_bound(std::size_t n) noexcept {
  return static_cast<std::size_t>(LZ4_compressBound(static_cast<int>(n)));
}

std::size_t lz4_compress(ByteSpan src, MutableByteSpan dst) {
  const int capacity =
      dst.size > static_cast<std::size_t>(INT_MAX) ? INT_MAX : static_cast<int>(dst.size);
  const int written =
      LZ4_compress_default(reinterpret_cast<const char*>(src.data),
                           reinterpret_cast<char*>(dst.data), static_cast<int>(src.size), capacity);
  if (written <= 0) {
    // Cannot happen with a dst of lz4_bound(src.size) bytes; a caller bug, not bad data.
    throw std::logic_error("LZ4_compress_default failed on " + std::to_string(src.size) +
                           " bytes into " + std::to_string(dst.size));
  }
  return static_cast<std::size_t>(written);
}

void lz4_decompress_exact(ByteSpan src, MutableByteSpan dst, std::size_t offset) {
  const int got = LZ4_decompress_safe(reinterpret_cast<const char*>(src.data),
                                      reinterpret_cast<char*>(dst.data), static_cast<int>(src.size),
                                      static_cast<int>(dst.size));
  if (got < 0) {
    throw CorruptDataError("codec blob: the lz4 payload at byte " + std::to_string(offset) + " (" +
                           std::to_string(src.size) + " bytes) is corrupt: it does not decode to " +
                           std::to_string(dst.size) + " bytes (LZ4_decompress_safe error " +
                           std::to_string(got) + ")");
  }
  if (static_cast<std::size_t>(got) != dst.size) {
    throw CorruptDataError("codec blob: the lz4 payload at byte " + std::to_string(offset) +
                           " decodes to " + std::to_string(got) + " bytes, expected " +
                           std::to_string(dst.size));
  }
}

}  // namespace pydata::detail
