#pragma once
/// Batch gather: copy the rows a batch needs from many sections (one per shard) into one
/// contiguous destination, split over the shared thread pool.
///
/// Two layouts, matching the shard format:
///  - FixedSections: every row has the same size; a section is `rows * row_bytes` contiguous.
///  - IndexedSections: variable-size rows; a section is a `uint64 offsets[rows + 1]` table into
///    a payload, row r being payload[offsets[r], offsets[r + 1]).
/// Rows are addressed by a global index over the sections in order (section 0's rows first).
/// Every index, and for IndexedSections every offset pair read, is checked before any byte
/// moves, so a bad batch leaves the destination untouched.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/span.hpp"

namespace pydata {

/// Fixed-size rows in several sections. Holds spans only: the caller keeps the memory alive.
class FixedSections {
 public:
  /// @param sections each a multiple of `row_bytes` long (FormatError otherwise).
  /// @param row_bytes bytes per row, > 0.
  /// @param names optional names (e.g. shard files) used in error messages; empty or one each.
  FixedSections(std::vector<ByteSpan> sections, std::size_t row_bytes,
                std::vector<std::string> names = {});

  /// Total rows over all sections.
  [[nodiscard]] std::size_t rows() const noexcept { return starts_.back(); }
  /// Bytes per row.
  [[nodiscard]] std::size_t row_bytes() const noexcept { return row_bytes_; }
  /// Number of sections.
  [[nodiscard]] std::size_t sections() const noexcept { return sections_.size(); }

  /// Copies row `indices[i]` to dst[i * row_bytes, (i + 1) * row_bytes) for every i, on up to
  /// `threads` threads. Throws std::out_of_range naming the first bad index and its position,
  /// FormatError if dst is not exactly `count * row_bytes` bytes.
  void gather(const std::int64_t* indices, std::size_t count, MutableByteSpan dst,
              std::size_t threads) const;

 private:
  std::vector<ByteSpan> sections_;
  std::vector<std::size_t> starts_;  // starts_[s] = first global row of section s; back() = rows
  std::size_t row_bytes_;
};

/// One section of variable-size rows: `rows + 1` offsets into `payload`.
struct IndexedSection {
  const std::uint64_t* offsets = nullptr;
  std::size_t rows = 0;
  ByteSpan payload;
};

/// Variable-size rows in several sections. Holds pointers only: the caller keeps the memory alive.
class IndexedSections {
 public:
  /// @param names optional names (e.g. shard files) used in error messages; empty or one each.
  explicit IndexedSections(std::vector<IndexedSection> sections,
                           std::vector<std::string> names = {});

  /// Total rows over all sections.
  [[nodiscard]] std::size_t rows() const noexcept { return starts_.back(); }
  /// Number of sections.
  [[nodiscard]] std::size_t sections() const noexcept { return sections_.size(); }

  /// Validates `indices` and the offsets of every row they name, and writes the output offsets
  /// (`count + 1` values, starting at 0) to `out_offsets`. Returns the total payload bytes.
  /// Throws std::out_of_range for a bad index, CorruptDataError for offsets that decrease or
  /// point past the payload (naming the section and row).
  std::uint64_t plan(const std::int64_t* indices, std::size_t count,
                     std::uint64_t* out_offsets) const;

  /// Copies the rows into dst as laid out by `plan` (call it first with the same indices).
  /// Throws FormatError if dst is smaller than out_offsets[count].
  void copy(const std::int64_t* indices, std::size_t count, const std::uint64_t* out_offsets,
            MutableByteSpan dst, std::size_t threads) const;

 private:
  std::vector<IndexedSection> sections_;
  std::vector<std::string> names_;
  std::vector<std::size_t> starts_;
};

}  // namespace pydata
