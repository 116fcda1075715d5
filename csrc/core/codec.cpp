// The blob header (layout in codec.hpp): writing, validating, and dispatch to the codec families.
#include "core/codec.hpp"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "core/checksum.hpp"
#include "core/codec_detail.hpp"
#include "core/errors.hpp"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the blob format is little-endian and this code copies fields in host order"
#endif

namespace pydata {
namespace {

constexpr std::uint8_t kMagic[4] = {'P', 'D', 'C', 'B'};
constexpr std::size_t kFixedHeader = 32;

// Offsets of the fixed fields (see the table in codec.hpp).
constexpr std::size_t kAtVersion = 4, kAtCodec = 5, kAtDType = 6, kAtNdim = 7, kAtRaw = 8,
                      kAtPayload = 16, kAtScales = 24, kAtReserved = 28;

detail::QuantKind quant_kind(Codec c) noexcept {
  return c == Codec::kInt8 || c == Codec::kInt8Lz4 ? detail::QuantKind::kInt8
                                                   : detail::QuantKind::kFp8;
}
template <class T>
T load(const std::uint8_t* p) noexcept {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class T>
void store(std::uint8_t* p, T v) noexcept {
  std::memcpy(p, &v, sizeof v);
}

std::string shape_str(const std::vector<std::uint64_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

std::string hex32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", v);
  return buf;
}

// Elements and bytes of an array of `shape`. False unless the product of the non-zero
// dimensions times `itemsize` fits in int64, which is numpy's own limit: every array numpy can
// hold passes, and every blob that passes decodes into a numpy array.
bool array_size(const std::vector<std::uint64_t>& shape, std::size_t itemsize,
                std::uint64_t* elements, std::uint64_t* bytes) noexcept {
  std::uint64_t nonzero = 1, nonzero_bytes = 0;
  bool empty = false;
  for (std::uint64_t d : shape) {
    if (d == 0) {
      empty = true;
    } else if (__builtin_mul_overflow(nonzero, d, &nonzero)) {
      return false;
    }
  }
  if (__builtin_mul_overflow(nonzero, itemsize, &nonzero_bytes) ||
      nonzero_bytes > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    return false;
  }
  *elements = empty ? 0 : nonzero;
  *bytes = empty ? 0 : nonzero_bytes;
  return true;
}

std::uint64_t expected_scales(Codec c, const std::vector<std::uint64_t>& shape) noexcept {
  if (!detail::is_quantised(c)) return 0;
  return shape.size() >= 2 ? shape[0] : 1;
}

std::uint64_t header_size(std::uint64_t ndim, std::uint64_t scales) noexcept {
  return kFixedHeader + 8 * ndim + 4 * scales + 4;
}

// The bytes a codec stores before lz4 (if any): the array, or one byte per element.
std::uint64_t codec_input_size(Codec c, std::uint64_t elements, std::uint64_t raw) noexcept {
  return detail::is_quantised(c) ? elements : raw;
}

[[noreturn]] void corrupt(const std::string& what) {
  throw CorruptDataError("codec blob: " + what);
}

void check_payload_size(const BlobInfo& info, std::uint64_t elements) {
  const std::uint64_t input = codec_input_size(info.codec, elements, info.raw_nbytes);
  const std::string at = " (payload_nbytes at byte 16)";
  if (!detail::uses_lz4(info.codec)) {
    if (info.payload_nbytes != input) {
      corrupt("codec '" + std::string(codec_name(info.codec)) + "' needs a payload of " +
              std::to_string(input) + " bytes, header says " + std::to_string(info.payload_nbytes) +
              at);
    }
    return;
  }
  if (input > detail::lz4_max_input()) {
    corrupt("the lz4 input of " + std::to_string(input) + " bytes exceeds the block limit of " +
            std::to_string(detail::lz4_max_input()));
  }
  const std::uint64_t bound = detail::lz4_bound(static_cast<std::size_t>(input));
  // One LZ4 byte expands to at most 255: a smaller payload cannot hold a valid block.
  if (info.payload_nbytes == 0 || info.payload_nbytes > bound ||
      input > 255 * info.payload_nbytes) {
    corrupt("an lz4 payload of " + std::to_string(info.payload_nbytes) + " bytes" + at +
            " cannot decode to " + std::to_string(input) + " bytes (allowed: " +
            std::to_string((input + 254) / 255) + ".." + std::to_string(bound) + ")");
  }
}

}  // namespace

std::size_t encode_bound(Codec codec, const TensorRef& t) {
  const std::string prefix = std::string("codec '") + codec_name(codec) + "': ";
  if (t.shape.size() > kMaxNdim) {
    throw FormatError(prefix + "ndim " + std::to_string(t.shape.size()) + " exceeds " +
                      std::to_string(kMaxNdim));
  }
  std::uint64_t elements = 0, raw = 0;
  if (!array_size(t.shape, dtype_itemsize(t.dtype), &elements, &raw) || raw != t.data.size) {
    throw FormatError(prefix + "shape " + shape_str(t.shape) + " of " + dtype_name(t.dtype) +
                      " does not match the " + std::to_string(t.data.size) + " bytes given");
  }
  if (detail::is_quantised(codec) && !detail::is_quantisable(t.dtype)) {
    throw FormatError(prefix + "takes float32, float16 or bfloat16 arrays, got " +
                      dtype_name(t.dtype));
  }
  const std::uint64_t scales = expected_scales(codec, t.shape);
  if (scales > std::numeric_limits<std::uint32_t>::max()) {
    throw FormatError(prefix + "axis 0 of length " + std::to_string(scales) +
                      " needs more scales than a blob can hold (2^32 - 1)");
  }
  const std::uint64_t input = codec_input_size(codec, elements, raw);
  if (detail::uses_lz4(codec) && input > detail::lz4_max_input()) {
    throw FormatError(prefix + "an lz4 block holds at most " +
                      std::to_string(detail::lz4_max_input()) + " bytes, this array needs " +
                      std::to_string(input) + "; split it or use 'raw', 'int8' or 'fp8'");
  }
  const std::uint64_t payload =
      detail::uses_lz4(codec) ? detail::lz4_bound(static_cast<std::size_t>(input)) : input;
  return static_cast<std::size_t>(header_size(t.shape.size(), scales) + payload);
}

std::size_t encode_into(Codec codec, const TensorRef& t, MutableByteSpan dst) {
  const std::size_t bound = encode_bound(codec, t);
  if (dst.size < bound) {
    throw FormatError("encode: the destination has " + std::to_string(dst.size) +
                      " bytes, encode_bound says " + std::to_string(bound));
  }
  const std::size_t ndim = t.shape.size();
  const std::size_t elements = t.data.size / dtype_itemsize(t.dtype);
  const auto scales = static_cast<std::size_t>(expected_scales(codec, t.shape));
  const auto header = static_cast<std::size_t>(header_size(ndim, scales));
  const std::size_t scales_at = kFixedHeader + 8 * ndim;
  std::uint8_t* out = dst.data;
  const MutableByteSpan payload_dst = dst.sub(header, dst.size - header);
  const detail::Channels channels = detail::channels_of(t.shape, elements);
  std::size_t payload = 0;
  switch (codec) {
    case Codec::kRaw:
      if (t.data.size != 0) std::memcpy(payload_dst.data, t.data.data, t.data.size);
      payload = t.data.size;
      break;
    case Codec::kLz4:
      payload = detail::lz4_compress(t.data, payload_dst);
      break;
    case Codec::kShuffleLz4: {
      detail::ScratchLease scratch(t.data.size);
      detail::byte_shuffle(t.data, dtype_itemsize(t.dtype), scratch.data());
      payload = detail::lz4_compress({scratch.data(), t.data.size}, payload_dst);
      break;
    }
    case Codec::kInt8:
    case Codec::kFp8:
      detail::quantize(quant_kind(codec), t.dtype, t.data, channels, out + scales_at,
                       payload_dst.data, codec_name(codec));
      payload = elements;
      break;
    case Codec::kInt8Lz4:
    case Codec::kFp8Lz4: {
      detail::ScratchLease scratch(elements);
      detail::quantize(quant_kind(codec), t.dtype, t.data, channels, out + scales_at,
                       scratch.data(), codec_name(codec));
      payload = detail::lz4_compress({scratch.data(), elements}, payload_dst);
      break;
    }
  }
  std::memcpy(out, kMagic, 4);
  out[kAtVersion] = kBlobVersion;
  out[kAtCodec] = static_cast<std::uint8_t>(codec);
  out[kAtDType] = static_cast<std::uint8_t>(t.dtype);
  out[kAtNdim] = static_cast<std::uint8_t>(ndim);
  store<std::uint64_t>(out + kAtRaw, t.data.size);
  store<std::uint64_t>(out + kAtPayload, payload);
  store<std::uint32_t>(out + kAtScales, static_cast<std::uint32_t>(scales));
  store<std::uint32_t>(out + kAtReserved, 0);
  for (std::size_t i = 0; i < ndim; ++i)
    store<std::uint64_t>(out + kFixedHeader + 8 * i, t.shape[i]);
  store<std::uint32_t>(out + header - 4, checksum({out, header - 4}));
  return header + payload;
}

BlobInfo read_blob_info(ByteSpan blob) {
  const std::string size = std::to_string(blob.size);
  if (blob.size < kFixedHeader) {
    corrupt("truncated: " + size + " bytes, the fixed header alone needs 32");
  }
  const std::uint8_t* p = blob.data;
  if (std::memcmp(p, kMagic, 4) != 0) {
    corrupt("bad magic at byte 0: expected \"PDCB\" (0x42434450 little-endian), found " +
            hex32(load<std::uint32_t>(p)));
  }
  BlobInfo info;
  info.version = p[kAtVersion];
  if (info.version != kBlobVersion) {
    corrupt("unsupported format version " + std::to_string(info.version) +
            " at byte 4 (this build reads version 1)");
  }
  const std::size_t ndim = p[kAtNdim];
  if (ndim > kMaxNdim) corrupt("ndim " + std::to_string(ndim) + " at byte 7 exceeds 64");
  info.scale_count = load<std::uint32_t>(p + kAtScales);
  const std::uint64_t header = header_size(ndim, info.scale_count);
  if (header > blob.size) {
    corrupt("truncated: " + size + " bytes, but the header (ndim " + std::to_string(ndim) + ", " +
            std::to_string(info.scale_count) + " scales) needs " + std::to_string(header));
  }
  const auto crc_at = static_cast<std::size_t>(header - 4);
  const std::uint32_t stored = load<std::uint32_t>(p + crc_at);
  const std::uint32_t computed = checksum({p, crc_at});
  if (stored != computed) {
    corrupt("header checksum mismatch: stored " + hex32(stored) + " at byte " +
            std::to_string(crc_at) + ", computed " + hex32(computed) + " over bytes [0, " +
            std::to_string(crc_at) + ")");
  }
  // The CRC matched, so what follows only catches blobs written by a broken encoder.
  if (p[kAtCodec] >= detail::kCodecCount)
    corrupt("unknown codec id " + std::to_string(p[kAtCodec]) + " at byte 5");
  if (p[kAtDType] >= detail::kDTypeCount)
    corrupt("unknown dtype code " + std::to_string(p[kAtDType]) + " at byte 6");
  if (load<std::uint32_t>(p + kAtReserved) != 0) corrupt("reserved field at byte 28 is not 0");
  info.codec = static_cast<Codec>(p[kAtCodec]);
  info.dtype = static_cast<DType>(p[kAtDType]);
  if (detail::is_quantised(info.codec) && !detail::is_quantisable(info.dtype)) {
    corrupt(std::string("codec '") + codec_name(info.codec) + "' with dtype " +
            dtype_name(info.dtype) + ": quantised blobs hold float32, float16 or bfloat16");
  }
  info.shape.resize(ndim);
  for (std::size_t i = 0; i < ndim; ++i)
    info.shape[i] = load<std::uint64_t>(p + kFixedHeader + 8 * i);
  info.raw_nbytes = load<std::uint64_t>(p + kAtRaw);
  info.payload_nbytes = load<std::uint64_t>(p + kAtPayload);
  info.blob_nbytes = blob.size;
  std::uint64_t elements = 0, raw = 0;
  if (!array_size(info.shape, dtype_itemsize(info.dtype), &elements, &raw)) {
    corrupt("shape " + shape_str(info.shape) + " of " + dtype_name(info.dtype) +
            " does not fit in int64 bytes (numpy's limit)");
  }
  if (raw != info.raw_nbytes) {
    corrupt("raw_nbytes at byte 8 is " + std::to_string(info.raw_nbytes) + ", but shape " +
            shape_str(info.shape) + " of " + dtype_name(info.dtype) + " needs " +
            std::to_string(raw));
  }
  const std::uint64_t want_scales = expected_scales(info.codec, info.shape);
  if (info.scale_count != want_scales) {
    corrupt("scale count at byte 24 is " + std::to_string(info.scale_count) + ", codec '" +
            codec_name(info.codec) + "' with shape " + shape_str(info.shape) + " needs " +
            std::to_string(want_scales));
  }
  info.scales_offset = kFixedHeader + 8 * ndim;
  info.payload_offset = static_cast<std::size_t>(header);
  for (std::size_t c = 0; c < info.scale_count; ++c) {
    const float s = load<float>(p + info.scales_offset + 4 * c);
    if (!(std::isfinite(s) && s >= 0.0f)) {
      corrupt("scale " + std::to_string(c) + " at byte " +
              std::to_string(info.scales_offset + 4 * c) + " is " + std::to_string(s) +
              ", expected finite and >= 0");
    }
  }
  if (blob.size - header != info.payload_nbytes) {
    corrupt(std::string(blob.size - header < info.payload_nbytes ? "truncated" : "trailing bytes") +
            ": the blob is " + size + " bytes, its header says " + std::to_string(header) +
            " header bytes + " + std::to_string(info.payload_nbytes) + " payload bytes");
  }
  check_payload_size(info, elements);
  return info;
}

void check_destination(const BlobInfo& info, DType dtype, const std::vector<std::uint64_t>& shape,
                       const std::string& what) {
  const bool dtype_ok =
      dtype == info.dtype ||
      (info.dtype == DType::kBfloat16 && (dtype == DType::kUint16 || dtype == DType::kInt16));
  if (!dtype_ok || shape != info.shape) {
    throw FormatError(what + " has dtype " + dtype_name(dtype) + " and shape " + shape_str(shape) +
                      ", but the blob holds " + dtype_name(info.dtype) +
                      (info.dtype == DType::kBfloat16 ? " (as uint16 bits)" : "") + " of shape " +
                      shape_str(info.shape));
  }
}

void decode_into(ByteSpan blob, const BlobInfo& info, MutableByteSpan dst) {
  if (dst.size != info.raw_nbytes) {
    throw FormatError("decode: the destination has " + std::to_string(dst.size) +
                      " bytes, the blob decodes to " + std::to_string(info.raw_nbytes));
  }
  const ByteSpan payload =
      blob.sub(info.payload_offset, static_cast<std::size_t>(info.payload_nbytes));
  const std::size_t elements = dst.size / dtype_itemsize(info.dtype);
  const std::uint8_t* scales = blob.data + info.scales_offset;
  const detail::Channels channels = detail::channels_of(info.shape, elements);
  switch (info.codec) {
    case Codec::kRaw:
      if (dst.size != 0) std::memcpy(dst.data, payload.data, dst.size);
      return;
    case Codec::kLz4:
      return detail::lz4_decompress_exact(payload, dst, info.payload_offset);
    case Codec::kShuffleLz4: {
      detail::ScratchLease scratch(dst.size);
      detail::lz4_decompress_exact(payload, {scratch.data(), dst.size}, info.payload_offset);
      return detail::byte_unshuffle({scratch.data(), dst.size}, dtype_itemsize(info.dtype),
                                    dst.data);
    }
    case Codec::kInt8:
    case Codec::kFp8:
      return detail::dequantize(quant_kind(info.codec), info.dtype, payload.data, scales, channels,
                                dst.data);
    case Codec::kInt8Lz4:
    case Codec::kFp8Lz4: {
      detail::ScratchLease scratch(elements);
      detail::lz4_decompress_exact(payload, {scratch.data(), elements}, info.payload_offset);
      return detail::dequantize(quant_kind(info.codec), info.dtype, scratch.data(), scales,
                                channels, dst.data);
    }
  }
}

}  // namespace pydata
