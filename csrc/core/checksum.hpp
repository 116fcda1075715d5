#pragma once
/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of the shard format and
/// of every codec blob header. On x86-64 CPUs with SSE4.2 it runs on the `crc32` instruction
/// over three interleaved streams (chosen at run time; the build needs no -m flags); elsewhere
/// it uses a portable slicing-by-8 table. Both give identical results. Thread-safe, no state.
///
/// Conventions: the standard CRC-32C (initial register ~0, final xor ~0), so
/// `checksum("123456789") == 0xE3069283`. `seed` continues a previous checksum:
/// `checksum(b, checksum(a)) == checksum(a + b)`, and seed 0 is the start of a stream.

#include <cstdint>

#include "core/span.hpp"

namespace pydata {

/// CRC-32C of `data`, continuing from `seed` (the checksum of the bytes before it, or 0).
/// Uses the SSE4.2 instruction when the CPU has it, else the portable table code.
[[nodiscard]] std::uint32_t checksum(ByteSpan data, std::uint32_t seed = 0) noexcept;

/// The same value as `checksum`, always computed with the portable slicing-by-8 tables.
/// Exists so tests can check that both paths agree.
[[nodiscard]] std::uint32_t checksum_portable(ByteSpan data, std::uint32_t seed = 0) noexcept;

/// Whether `checksum` runs on the SSE4.2 `crc32` instruction on this CPU.
[[nodiscard]] bool checksum_hardware_available() noexcept;

}  // namespace pydata
