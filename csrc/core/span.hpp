#pragma once
/// ByteSpan / MutableByteSpan: a pointer and a size, the currency between the bindings and the
/// core. The core never owns what a span points at; the caller keeps it alive for the call.

#include <cstddef>
#include <cstdint>

namespace pydata {

/// A read-only run of bytes owned by the caller.
struct ByteSpan {
  const std::uint8_t* data = nullptr;
  std::size_t size = 0;

  /// The sub-span [offset, offset + length); the caller has checked the bounds.
  [[nodiscard]] ByteSpan sub(std::size_t offset, std::size_t length) const noexcept {
    return {data + offset, length};
  }
};

/// A writable run of bytes owned by the caller.
struct MutableByteSpan {
  std::uint8_t* data = nullptr;
  std::size_t size = 0;

  /// The sub-span [offset, offset + length); the caller has checked the bounds.
  [[nodiscard]] MutableByteSpan sub(std::size_t offset, std::size_t length) const noexcept {
    return {data + offset, length};
  }
  /// The same bytes, read-only.
  [[nodiscard]] ByteSpan as_const() const noexcept { return {data, size}; }
};

}  // namespace pydata
