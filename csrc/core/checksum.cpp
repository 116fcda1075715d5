#include "core/checksum.hpp"

#include <array>
#include <cstddef>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define PYDATA_CRC32C_X86 1
#endif

namespace pydata {
namespace {

// Both paths work on the raw CRC register (no pre/post inversion); the public functions apply
// the standard inversions, which is what makes `seed` a continuation.
constexpr std::uint32_t kPoly = 0x82F63B78u;  // x^32 + ... reflected, Castagnoli

using Table = std::array<std::array<std::uint32_t, 256>, 8>;

// tables[0] is the byte-at-a-time table; tables[k][b] advances tables[k-1][b] by one zero
// byte, so eight lookups absorb eight input bytes at once (slicing-by-8).
constexpr Table make_tables() {
  Table t{};
  for (std::uint32_t b = 0; b < 256; ++b) {
    std::uint32_t c = b;
    for (int i = 0; i < 8; ++i) c = (c & 1u) ? (c >> 1) ^ kPoly : c >> 1;
    t[0][b] = c;
  }
  for (std::size_t k = 1; k < 8; ++k) {
    for (std::size_t b = 0; b < 256; ++b) t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xFFu];
  }
  return t;
}

constexpr Table kTables = make_tables();

inline std::uint32_t load_le32(const std::uint8_t* p) noexcept {
  return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
         static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}

std::uint32_t raw_portable(std::uint32_t crc, const std::uint8_t* p, std::size_t n) noexcept {
  const auto& t = kTables;
  for (; n >= 8; n -= 8, p += 8) {
    const std::uint32_t lo = load_le32(p) ^ crc;
    const std::uint32_t hi = load_le32(p + 4);
    crc = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^
          t[3][hi & 0xFF] ^ t[2][(hi >> 8) & 0xFF] ^ t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
  }
  for (; n > 0; --n, ++p) crc = (crc >> 8) ^ t[0][(crc ^ *p) & 0xFF];
  return crc;
}

#ifdef PYDATA_CRC32C_X86

// Multiplication of two polynomials modulo P in the reflected bit order (bit 31 is x^0).
// Advancing a raw CRC register over n zero bytes multiplies it by x^(8n) mod P, which is
// how the three independent streams below are stitched back together.
constexpr std::uint32_t mul_mod_p(std::uint32_t a, std::uint32_t b) {
  std::uint32_t product = 0;
  for (std::uint32_t m = 1u << 31; m != 0; m >>= 1) {
    if (a & m) product ^= b;
    b = (b & 1u) ? (b >> 1) ^ kPoly : b >> 1;  // b *= x
  }
  return product;
}

constexpr std::uint32_t x_pow_8n(std::size_t n) {
  std::uint32_t result = 1u << 31;  // x^0
  std::uint32_t base = 1u << 23;    // x^8
  for (; n != 0; n >>= 1) {
    if (n & 1) result = mul_mod_p(result, base);
    base = mul_mod_p(base, base);
  }
  return result;
}

/// Four 256-entry tables that advance a CRC register over `kBytes` zero bytes.
template <std::size_t kBytes>
struct ZeroShift {
  std::array<std::array<std::uint32_t, 256>, 4> t{};
  constexpr ZeroShift() {
    const std::uint32_t x = x_pow_8n(kBytes);
    for (std::uint32_t k = 0; k < 4; ++k) {
      for (std::uint32_t b = 0; b < 256; ++b) t[k][b] = mul_mod_p(x, b << (8 * k));
    }
  }
  std::uint32_t operator()(std::uint32_t crc) const noexcept {
    return t[0][crc & 0xFF] ^ t[1][(crc >> 8) & 0xFF] ^ t[2][(crc >> 16) & 0xFF] ^ t[3][crc >> 24];
  }
};

// Stream lengths: long blocks amortise the two shifts; short ones keep mid-sized inputs
// (a few KiB, typical of one encoded sample) on three streams too.
constexpr std::size_t kLong = 8192;
constexpr std::size_t kShort = 256;
constexpr ZeroShift<kLong> kShiftLong{};
constexpr ZeroShift<kShort> kShiftShort{};

inline std::uint64_t load64(const std::uint8_t* p) noexcept {
  std::uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// The crc32 instruction has a latency of three cycles but a throughput of one per cycle, so
// three independent streams keep it busy; they are combined with the zero-shift tables.
template <std::size_t kBlock, class Shift>
__attribute__((target("sse4.2"))) std::uint32_t three_streams(std::uint32_t crc,
                                                              const std::uint8_t*& p,
                                                              std::size_t& n,
                                                              const Shift& shift) noexcept {
  for (; n >= 3 * kBlock; n -= 3 * kBlock, p += 3 * kBlock) {
    std::uint64_t a = crc, b = 0, c = 0;
    for (std::size_t i = 0; i < kBlock; i += 8) {
      a = _mm_crc32_u64(a, load64(p + i));
      b = _mm_crc32_u64(b, load64(p + kBlock + i));
      c = _mm_crc32_u64(c, load64(p + 2 * kBlock + i));
    }
    crc = shift(shift(static_cast<std::uint32_t>(a)) ^ static_cast<std::uint32_t>(b)) ^
          static_cast<std::uint32_t>(c);
  }
  return crc;
}

__attribute__((target("sse4.2"))) std::uint32_t raw_sse42(std::uint32_t crc, const std::uint8_t* p,
                                                          std::size_t n) noexcept {
  crc = three_streams<kLong>(crc, p, n, kShiftLong);
  crc = three_streams<kShort>(crc, p, n, kShiftShort);
  std::uint64_t c = crc;
  for (; n >= 8; n -= 8, p += 8) c = _mm_crc32_u64(c, load64(p));
  crc = static_cast<std::uint32_t>(c);
  for (; n > 0; --n, ++p) crc = _mm_crc32_u8(crc, *p);
  return crc;
}

bool detect_sse42() noexcept {
  __builtin_cpu_init();
  return __builtin_cpu_supports("sse4.2");
}

#endif  // PYDATA_CRC32C_X86

}  // namespace

bool checksum_hardware_available() noexcept {
#ifdef PYDATA_CRC32C_X86
  static const bool available = detect_sse42();
  return available;
#else
  return false;
#endif
}

std::uint32_t checksum(ByteSpan data, std::uint32_t seed) noexcept {
#ifdef PYDATA_CRC32C_X86
  if (checksum_hardware_available()) return ~raw_sse42(~seed, data.data, data.size);
#endif
  return ~raw_portable(~seed, data.data, data.size);
}

std::uint32_t checksum_portable(ByteSpan data, std::uint32_t seed) noexcept {
  return ~raw_portable(~seed, data.data, data.size);
}

}  // namespace pydata
