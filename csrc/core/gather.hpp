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
/// moves, so a bad batch leaves the destination untouched. IndexedSections can also decode
/// rows that are codec blobs (core/codec.hpp) straight from their payload into a batch.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/codec.hpp"
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

  /// The payload bytes of row `indices[i]` for every i, validated as `plan` validates them
  /// (same exceptions and messages). The spans point into the caller's payloads.
  [[nodiscard]] std::vector<ByteSpan> spans(const std::int64_t* indices, std::size_t count) const;

  /// Copies the rows into dst as laid out by `plan` (call it first with the same indices).
  /// Throws FormatError if dst is smaller than out_offsets[count].
  void copy(const std::int64_t* indices, std::size_t count, const std::uint64_t* out_offsets,
            MutableByteSpan dst, std::size_t threads) const;

  /// Decodes row `indices[i]`, a codec blob, straight from its payload into row i of `dst`, an
  /// array of `dtype` and `shape` == (count, *sample_shape), with core `decode_batch` on up to
  /// `threads` threads. Indices, offsets, every blob header and dtype/shape are all checked
  /// before any row is written. Throws what `spans` throws; FormatError if `shape` does not
  /// have `count` rows or a blob's dtype or shape differs from a row of dst; CorruptDataError
  /// naming the section and row for a damaged blob (dst may then hold partial output).
  void decode(const std::int64_t* indices, std::size_t count, DType dtype,
              const std::vector<std::uint64_t>& shape, MutableByteSpan dst,
              std::size_t threads) const;

  /// The rows `indices[i]`, codec blobs of `dtype` and `ndim` dimensions whose shapes vary, as
  /// planned by core `plan_ragged` (errors name the section and row). Core `decode_ragged` then
  /// decodes them straight from their payloads: no blob is copied first.
  [[nodiscard]] RaggedPlan plan_ragged(const std::int64_t* indices, std::size_t count, DType dtype,
                                       std::optional<std::size_t> ndim) const;

  /// "section 1 ('b.bin') row 7": names global row `index` (already validated) in errors.
  [[nodiscard]] std::string row_label(std::int64_t index) const;

 private:
  // The validated payload bytes of global row `index`, at `position` in the batch.
  [[nodiscard]] ByteSpan row_bytes(std::int64_t index, std::size_t position) const;

  std::vector<IndexedSection> sections_;
  std::vector<std::string> names_;
  std::vector<std::size_t> starts_;
};

}  // namespace pydata
