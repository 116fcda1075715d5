// Codec and dtype names, codes and numpy type strings.
#include <array>
#include <string>

#include "core/codec_detail.hpp"
#include "core/errors.hpp"

namespace pydata {
namespace {

constexpr std::array<const char*, detail::kCodecCount> kCodecNames = {
    "raw", "lz4", "shuffle+lz4", "int8", "int8+lz4", "fp8", "fp8+lz4"};

struct DTypeDesc {
  const char* name;
  const char* typestr;
  std::size_t itemsize;
};
constexpr std::array<DTypeDesc, detail::kDTypeCount> kDTypes = {{
    {"bool", "|b1", 1},
    {"int8", "|i1", 1},
    {"uint8", "|u1", 1},
    {"int16", "<i2", 2},
    {"uint16", "<u2", 2},
    {"int32", "<i4", 4},
    {"uint32", "<u4", 4},
    {"int64", "<i8", 8},
    {"uint64", "<u8", 8},
    {"float16", "<f2", 2},
    {"bfloat16", "<u2", 2},
    {"float32", "<f4", 4},
    {"float64", "<f8", 8},
    {"complex64", "<c8", 8},
    {"complex128", "<c16", 16},
}};

}  // namespace

std::vector<std::string> codec_names() { return {kCodecNames.begin(), kCodecNames.end()}; }

Codec codec_from_name(std::string_view name) {
  for (std::size_t i = 0; i < kCodecNames.size(); ++i) {
    if (name == kCodecNames[i]) return static_cast<Codec>(i);
  }
  std::string known;
  for (const char* n : kCodecNames) known += (known.empty() ? "'" : ", '") + std::string(n) + "'";
  throw FormatError("unknown codec '" + std::string(name) + "'; known codecs: " + known);
}

const char* codec_name(Codec codec) noexcept {
  return kCodecNames[static_cast<std::size_t>(codec)];
}
const char* dtype_name(DType d) noexcept { return kDTypes[static_cast<std::size_t>(d)].name; }
const char* dtype_typestr(DType d) noexcept { return kDTypes[static_cast<std::size_t>(d)].typestr; }
std::size_t dtype_itemsize(DType d) noexcept {
  return kDTypes[static_cast<std::size_t>(d)].itemsize;
}

DType resolve_dtype(std::string_view typestr, std::string_view name) {
  if (!typestr.empty() && typestr[0] == '>') {
    throw FormatError("big-endian dtype '" + std::string(typestr) +
                      "' is not supported; convert the array to little-endian first");
  }
  std::size_t found = kDTypes.size();
  for (std::size_t i = 0; i < kDTypes.size(); ++i) {
    if (static_cast<DType>(i) != DType::kBfloat16 && typestr == kDTypes[i].typestr) found = i;
  }
  if (found == kDTypes.size()) {
    throw FormatError("unsupported dtype '" + std::string(typestr) +
                      "'; codecs take bool, integer, float and complex arrays");
  }
  const auto base = static_cast<DType>(found);
  if (name.empty() || name == kDTypes[found].name) return base;
  if (name == "bfloat16") {
    if (base == DType::kUint16 || base == DType::kInt16) return DType::kBfloat16;
    throw FormatError("dtype='bfloat16' needs the bits in a uint16 or int16 array, got " +
                      std::string(kDTypes[found].name));
  }
  throw FormatError("dtype='" + std::string(name) + "' does not match the array's dtype " +
                    kDTypes[found].name + " (only 'bfloat16' may relabel uint16 bits)");
}

}  // namespace pydata
