#pragma once
/// Bit-exact conversions between double and the small float formats the codecs store or
/// produce: IEEE binary16 (float16), bfloat16 and OCP FP8 E4M3 ("e4m3fn": no infinities, one
/// NaN pattern per sign, largest finite value 448). Every rounding is round-to-nearest-even,
/// done in one step from double, so no value is rounded twice. Header-only and branch-light:
/// the dequantisation tables of `codec_quantize.cpp` are built with these on every decode.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace pydata::detail {

/// The bits of `v` as an unsigned integer of the same size (C++17 stand-in for bit_cast).
[[nodiscard]] inline std::uint64_t bits_of(double v) noexcept {
  std::uint64_t b;
  std::memcpy(&b, &v, sizeof b);
  return b;
}

/// The float32 whose bits are `b`.
[[nodiscard]] inline float float_from_bits(std::uint32_t b) noexcept {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}

/// The bits of the float32 `f`.
[[nodiscard]] inline std::uint32_t bits_of(float f) noexcept {
  std::uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

/// 2^e as a compile-time constant (std::ldexp is not constexpr in C++17).
[[nodiscard]] constexpr double pow2(int e) noexcept {
  double r = 1.0;
  for (; e > 0; --e) r *= 2.0;
  for (; e < 0; ++e) r *= 0.5;
  return r;
}

/// Rounds `v` (|v| < 2^51) to the nearest integer, ties to even. The sum with 1.5 * 2^52 has
/// no fractional bits, so the FPU's default rounding mode does the work; the compiler may not
/// fold the pair away because the build never enables -ffast-math.
[[nodiscard]] inline double round_half_even(double v) noexcept {
  constexpr double kMagic = 6755399441055744.0;  // 1.5 * 2^52
  return (v + kMagic) - kMagic;
}

/// Encodes a finite `a >= 0` into a binary format with `kMant` stored mantissa bits and
/// exponent bias `kBias`, round-to-nearest-even, subnormals included. Returns the unsigned
/// code (exponent field << kMant | mantissa); a carry past the largest exponent shows up as a
/// code at or above the format's infinity code, which the caller saturates.
template <int kMant, int kBias>
[[nodiscard]] inline std::uint32_t encode_magnitude(double a) noexcept {
  constexpr double kMinNormal = pow2(1 - kBias);
  constexpr double kPerSubnormalStep = pow2(kBias - 1 + kMant);
  if (a < kMinNormal) {
    // Subnormal spacing is 2^(1 - bias - kMant); a code of 2^kMant is the smallest normal.
    return static_cast<std::uint32_t>(round_half_even(a * kPerSubnormalStep));
  }
  constexpr int kDrop = 52 - kMant;
  std::uint64_t b = bits_of(a);
  b += (std::uint64_t{1} << (kDrop - 1)) - 1 + ((b >> kDrop) & 1);  // round half to even
  const std::uint64_t exp_mant = b >> kDrop;                        // double exponent | mantissa
  return static_cast<std::uint32_t>(exp_mant - (std::uint64_t(1023 - kBias) << kMant));
}

/// Rounds `v` to float16 bits, saturating finite overflow to +-65504 (never infinity).
[[nodiscard]] inline std::uint16_t half_from_double(double v) noexcept {
  const std::uint16_t sign = std::signbit(v) ? 0x8000 : 0;
  if (std::isnan(v)) return 0x7E00;
  std::uint32_t code = std::isinf(v) ? 0x7C00u : encode_magnitude<10, 15>(std::fabs(v));
  if (code >= 0x7C00u) code = 0x7BFFu;
  return static_cast<std::uint16_t>(sign | code);
}

/// Rounds `v` to bfloat16 bits, saturating finite overflow to the largest finite bfloat16.
[[nodiscard]] inline std::uint16_t bfloat16_from_double(double v) noexcept {
  const std::uint16_t sign = std::signbit(v) ? 0x8000 : 0;
  if (std::isnan(v)) return 0x7FC0;
  std::uint32_t code = std::isinf(v) ? 0x7F80u : encode_magnitude<7, 127>(std::fabs(v));
  if (code >= 0x7F80u) code = 0x7F7Fu;
  return static_cast<std::uint16_t>(sign | code);
}

/// Rounds `v` to float32 bits, saturating finite overflow to +-FLT_MAX.
[[nodiscard]] inline std::uint32_t float_bits_from_double(double v) noexcept {
  const float f = static_cast<float>(v);  // one rounding, to nearest even
  if (std::isinf(f) && !std::isinf(v)) return bits_of(std::copysign(3.4028234663852886e38f, f));
  return bits_of(f);
}

/// Rounds `v` to FP8 E4M3 (bias 7, 3 mantissa bits), saturating at +-448. NaN maps to 0x7F.
[[nodiscard]] inline std::uint8_t e4m3_from_double(double v) noexcept {
  if (std::isnan(v)) return 0x7F;
  const std::uint8_t sign = std::signbit(v) ? 0x80 : 0;
  const double a = std::fabs(v);
  // 0x7E is 448 = 1.75 * 2^8, the largest finite code; 0x7F is NaN, so no carry may reach it.
  const std::uint32_t code = a >= 448.0 ? 0x7Eu : encode_magnitude<3, 7>(a);
  return static_cast<std::uint8_t>(sign | (code > 0x7Eu ? 0x7Eu : code));
}

/// The exact magnitude of the FP8 E4M3 code `b & 0x7F` (NaN for 0x7F).
[[nodiscard]] constexpr double e4m3_magnitude(std::uint8_t b) noexcept {
  const int exp = (b >> 3) & 0xF;
  const int mant = b & 0x7;
  if (exp == 0xF && mant == 0x7) return std::numeric_limits<double>::quiet_NaN();
  if (exp == 0) return mant * pow2(-9);
  return (1.0 + mant / 8.0) * pow2(exp - 7);
}

/// The float32 equal to the float16 bits `h` (every float16 is exact in float32).
[[nodiscard]] inline float half_to_float(std::uint16_t h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp_mant = h & 0x7FFFu;
  if (exp_mant >= 0x7C00u) return float_from_bits(sign | 0x7F800000u | (exp_mant & 0x3FFu) << 13);
  if (exp_mant < 0x0400u) {
    const float mag = static_cast<float>(exp_mant) * 5.9604644775390625e-8f;  // * 2^-24
    return sign ? -mag : mag;
  }
  return float_from_bits(sign | ((exp_mant << 13) + (std::uint32_t{127 - 15} << 23)));
}

/// The float32 equal to the bfloat16 bits `h`.
[[nodiscard]] inline float bfloat16_to_float(std::uint16_t h) noexcept {
  return float_from_bits(static_cast<std::uint32_t>(h) << 16);
}

}  // namespace pydata::detail
