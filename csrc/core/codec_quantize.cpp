// int8 and FP8 E4M3 quantisation with one float32 scale per channel. The error bounds are
// stated in codec.hpp; the comments here say why the code meets them.
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "core/codec_detail.hpp"
#include "core/errors.hpp"

namespace pydata::detail {
namespace {

constexpr double kInt8Max = 127.0;
constexpr double kFp8Max = 448.0;

constexpr std::array<double, 128> make_e4m3_magnitudes() {
  std::array<double, 128> t{};
  for (std::size_t b = 0; b < 128; ++b) t[b] = e4m3_magnitude(static_cast<std::uint8_t>(b));
  return t;
}

// The exact value of every non-negative E4M3 code; e4m3_magnitude is not cheap enough to
// call 128 times per channel on every decode.
constexpr std::array<double, 128> kE4m3 = make_e4m3_magnitudes();

// Rounding the scale up makes every |x| / s_c <= 127 (or 448), so no code ever clips, and
// keeps s_c > 0 whenever the channel is not all zeros (float32 underflow would give 0).
float scale_for(float max_abs, double code_max) noexcept {
  const double exact = static_cast<double>(max_abs) / code_max;
  float s = static_cast<float>(exact);
  if (static_cast<double>(s) < exact) s = std::nextafter(s, std::numeric_limits<float>::infinity());
  return s;
}

[[noreturn]] void throw_non_finite(const char* codec, std::size_t index, float v) {
  throw FormatError(std::string("codec '") + codec + "': input element " + std::to_string(index) +
                    " is " +
                    (std::isnan(v) ? "nan"
                     : v > 0       ? "inf"
                                   : "-inf") +
                    "; quantised codecs need finite values");
}

template <DType kDType>
float load(const std::uint8_t* base, std::size_t i) noexcept {
  return load_float(kDType, base, i);
}

template <DType kDType>
void quantize_typed(QuantKind kind, const std::uint8_t* src, Channels ch, std::uint8_t* scales,
                    std::uint8_t* q, const char* codec) {
  for (std::size_t c = 0; c < ch.count; ++c) {
    const std::size_t begin = c * ch.inner;
    float max_abs = 0.0f;
    for (std::size_t i = begin; i < begin + ch.inner; ++i) {
      const float v = load<kDType>(src, i);
      if (!std::isfinite(v)) throw_non_finite(codec, i, v);
      max_abs = std::fmax(max_abs, std::fabs(v));
    }
    const float s = scale_for(max_abs, kind == QuantKind::kInt8 ? kInt8Max : kFp8Max);
    std::memcpy(scales + 4 * c, &s, 4);
    if (s == 0.0f) {
      if (ch.inner != 0) std::memset(q + begin, 0, ch.inner);
      continue;
    }
    const double sd = s;
    for (std::size_t i = begin; i < begin + ch.inner; ++i) {
      // x / s_c in double is within 2^-53 relative of exact, far below the codes' spacing.
      const double y = static_cast<double>(load<kDType>(src, i)) / sd;
      q[i] = kind == QuantKind::kInt8
                 ? static_cast<std::uint8_t>(static_cast<std::int8_t>(round_half_even(y)))
                 : e4m3_from_double(y);
    }
  }
}

// Output element types: float16 and bfloat16 as 16-bit patterns, float32 as 32-bit ones.
struct HalfOut {
  using Bits = std::uint16_t;
  static constexpr Bits kSign = 0x8000;
  static Bits from(double v) noexcept { return half_from_double(v); }
};
struct Bfloat16Out {
  using Bits = std::uint16_t;
  static constexpr Bits kSign = 0x8000;
  static Bits from(double v) noexcept { return bfloat16_from_double(v); }
};
struct Float32Out {
  using Bits = std::uint32_t;
  static constexpr Bits kSign = 0x80000000u;
  static Bits from(double v) noexcept { return float_bits_from_double(v); }
};

// code * s_c is exact in double (8 or 4 significant bits times 24), so each table entry is
// rounded once, to the output dtype. Conversions saturate symmetrically, which lets the
// negative half of the table be the positive half with the sign bit set.
template <class Out>
void build_table(QuantKind kind, double s, typename Out::Bits* table) noexcept {
  if (kind == QuantKind::kInt8) {
    table[0] = Out::from(0.0);
    for (int b = 1; b < 128; ++b) {
      table[b] = Out::from(b * s);
      table[256 - b] = static_cast<typename Out::Bits>(table[b] | Out::kSign);
    }
    table[128] = Out::from(-128.0 * s);  // never written by encode; decodes without harm
    return;
  }
  for (int b = 0; b < 128; ++b) {
    table[b] = Out::from(kE4m3[static_cast<std::size_t>(b)] * s);
    table[b | 0x80] = static_cast<typename Out::Bits>(table[b] | Out::kSign);
  }
}

template <class Out>
void dequantize_typed(QuantKind kind, const std::uint8_t* q, const std::uint8_t* scales,
                      Channels ch, std::uint8_t* dst) noexcept {
  using Bits = typename Out::Bits;
  Bits table[256];
  for (std::size_t c = 0; c < ch.count; ++c) {
    float s;
    std::memcpy(&s, scales + 4 * c, 4);
    build_table<Out>(kind, s, table);
    const std::uint8_t* in = q + c * ch.inner;
    std::uint8_t* out = dst + c * ch.inner * sizeof(Bits);
    for (std::size_t i = 0; i < ch.inner; ++i) {
      std::memcpy(out + i * sizeof(Bits), &table[in[i]], sizeof(Bits));
    }
  }
}

}  // namespace

Channels channels_of(const std::vector<std::uint64_t>& shape, std::size_t elements) noexcept {
  if (shape.size() < 2) return {1, elements};
  const auto count = static_cast<std::size_t>(shape[0]);
  return {count, count == 0 ? 0 : elements / count};
}

void quantize(QuantKind kind, DType dtype, ByteSpan src, Channels ch, std::uint8_t* scales,
              std::uint8_t* q, const char* codec) {
  switch (dtype) {
    case DType::kFloat32:
      return quantize_typed<DType::kFloat32>(kind, src.data, ch, scales, q, codec);
    case DType::kFloat16:
      return quantize_typed<DType::kFloat16>(kind, src.data, ch, scales, q, codec);
    case DType::kBfloat16:
      return quantize_typed<DType::kBfloat16>(kind, src.data, ch, scales, q, codec);
    default:
      throw FormatError(std::string("codec '") + codec +
                        "' takes float32, float16 or bfloat16, got " + dtype_name(dtype));
  }
}

void dequantize(QuantKind kind, DType dtype, const std::uint8_t* q, const std::uint8_t* scales,
                Channels ch, std::uint8_t* dst) noexcept {
  switch (dtype) {
    case DType::kFloat32:
      return dequantize_typed<Float32Out>(kind, q, scales, ch, dst);
    case DType::kFloat16:
      return dequantize_typed<HalfOut>(kind, q, scales, ch, dst);
    case DType::kBfloat16:
      return dequantize_typed<Bfloat16Out>(kind, q, scales, ch, dst);
    default:
      return;  // read_blob_info rejects quantised blobs of other dtypes
  }
}

}  // namespace pydata::detail

namespace pydata {

QuantizationReport quantization_error(Codec codec, const TensorRef& tensor) {
  std::vector<std::uint8_t> blob(encode_bound(codec, tensor));
  blob.resize(encode_into(codec, tensor, {blob.data(), blob.size()}));
  const ByteSpan encoded{blob.data(), blob.size()};
  const BlobInfo info = read_blob_info(encoded);
  // One spare byte keeps data() non-null for empty arrays.
  std::vector<std::uint8_t> decoded(tensor.data.size + 1);
  decode_into(encoded, info, {decoded.data(), tensor.data.size});
  QuantizationReport report;
  report.blob_nbytes = blob.size();
  if (!detail::is_quantised(codec)) {
    if (tensor.data.size != 0 &&
        std::memcmp(decoded.data(), tensor.data.data, tensor.data.size) != 0) {
      throw std::logic_error(std::string("codec '") + codec_name(codec) + "' did not round-trip");
    }
    return report;
  }
  double err2 = 0, norm2 = 0;
  const std::size_t elements = tensor.data.size / dtype_itemsize(tensor.dtype);
  for (std::size_t i = 0; i < elements; ++i) {
    const double x = detail::load_float(tensor.dtype, tensor.data.data, i);
    const double d = std::fabs(x - detail::load_float(tensor.dtype, decoded.data(), i));
    report.max_abs = std::max(report.max_abs, d);
    err2 += d * d;
    norm2 += x * x;
  }
  report.rel_l2 = norm2 > 0 ? std::sqrt(err2) / std::sqrt(norm2) : 0.0;
  return report;
}

}  // namespace pydata
