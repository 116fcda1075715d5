#include "core/gather.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "core/errors.hpp"
#include "core/row_copy.hpp"
#include "core/thread_pool.hpp"

namespace pydata {
namespace {

// Below this many bytes a batch is copied on the calling thread: handing work to another
// thread costs more than the copy itself.
constexpr std::size_t kMinParallelBytes = std::size_t{1} << 20;
// Tasks are sized so that each thread gets several, which evens out page faults on cold data.
constexpr std::size_t kTaskBytes = std::size_t{256} << 10;

[[noreturn]] void throw_bad_index(std::int64_t index, std::size_t position, std::size_t rows,
                                  std::size_t sections) {
  throw std::out_of_range("index " + std::to_string(index) + " (position " +
                          std::to_string(position) + " in the batch) is out of range for " +
                          std::to_string(rows) + " rows in " + std::to_string(sections) +
                          " section(s)");
}

// Resolves a global row to (section, local row); `starts` is sorted with starts[0] == 0.
inline std::pair<std::size_t, std::size_t> locate(const std::vector<std::size_t>& starts,
                                                  std::size_t row) {
  if (starts.size() == 2) return {0, row};  // one section: no search
  const auto it = std::upper_bound(starts.begin(), starts.end(), row);
  const auto section = static_cast<std::size_t>(it - starts.begin()) - 1;
  return {section, row - starts[section]};
}

std::string section_label(const std::vector<std::string>& names, std::size_t s) {
  std::string label = "section " + std::to_string(s);
  if (s < names.size()) label += " ('" + names[s] + "')";
  return label;
}

std::size_t tasks_for(std::size_t total_bytes, std::size_t rows, std::size_t threads) {
  if (threads <= 1 || total_bytes < kMinParallelBytes) return 1;
  return std::clamp<std::size_t>(total_bytes / kTaskBytes, threads, rows);
}

void check_names(std::size_t names, std::size_t sections) {
  if (names != 0 && names != sections) {
    throw std::invalid_argument("got " + std::to_string(names) + " section names for " +
                                std::to_string(sections) + " sections");
  }
}

}  // namespace

FixedSections::FixedSections(std::vector<ByteSpan> sections, std::size_t row_bytes,
                             std::vector<std::string> names)
    : sections_(std::move(sections)), row_bytes_(row_bytes) {
  check_names(names.size(), sections_.size());
  if (row_bytes_ == 0) throw FormatError("row size must be positive, got 0 bytes");
  for (std::size_t s = 0; s < sections_.size(); ++s) {
    if (sections_[s].size % row_bytes_ != 0) {
      throw FormatError(section_label(names, s) + " is " + std::to_string(sections_[s].size) +
                        " bytes, not a whole number of " + std::to_string(row_bytes_) +
                        "-byte rows");
    }
  }
  starts_.assign(1, 0);
  for (const ByteSpan& section : sections_) starts_.push_back(starts_.back() + section.size / row_bytes_);
}

void FixedSections::gather(const std::int64_t* indices, std::size_t count, MutableByteSpan dst,
                           std::size_t threads) const {
  if (dst.size != count * row_bytes_) {
    throw FormatError("destination is " + std::to_string(dst.size) + " bytes; " +
                      std::to_string(count) + " rows of " + std::to_string(row_bytes_) +
                      " bytes need " + std::to_string(count * row_bytes_));
  }
  // Resolve and bounds-check everything first: a bad index must leave dst untouched.
  std::vector<const std::uint8_t*> sources(count);
  const std::size_t total = rows();
  for (std::size_t i = 0; i < count; ++i) {
    const std::int64_t index = indices[i];
    if (index < 0 || static_cast<std::uint64_t>(index) >= total) {
      throw_bad_index(index, i, total, sections_.size());
    }
    const auto [section, row] = locate(starts_, static_cast<std::size_t>(index));
    sources[i] = sections_[section].data + row * row_bytes_;
  }
  const std::size_t tasks = tasks_for(dst.size, count, threads);
  // A batch past the parallel threshold is too big to stay in cache for its consumer anyway.
  const bool stream = dst.size >= kMinParallelBytes;
  ThreadPool::shared().parallel_for(tasks, threads, [&](std::size_t task) {
    const std::size_t begin = count * task / tasks;
    const std::size_t end = count * (task + 1) / tasks;
    std::uint8_t* out = dst.data + begin * row_bytes_;
    for (std::size_t i = begin; i < end; ++i, out += row_bytes_) {
      if (i + 1 < end) detail::prefetch_row(sources[i + 1], row_bytes_);
      detail::copy_row(out, sources[i], row_bytes_, stream);
    }
    if (stream) detail::end_stream();
  });
}

IndexedSections::IndexedSections(std::vector<IndexedSection> sections,
                                 std::vector<std::string> names)
    : sections_(std::move(sections)), names_(std::move(names)) {
  check_names(names_.size(), sections_.size());
  starts_.assign(1, 0);
  for (const IndexedSection& section : sections_) starts_.push_back(starts_.back() + section.rows);
}

ByteSpan IndexedSections::row_bytes(std::int64_t index, std::size_t position) const {
  const std::size_t total = rows();
  if (index < 0 || static_cast<std::uint64_t>(index) >= total) {
    throw_bad_index(index, position, total, sections_.size());
  }
  const auto [s, row] = locate(starts_, static_cast<std::size_t>(index));
  const IndexedSection& section = sections_[s];
  const std::uint64_t begin = section.offsets[row];
  const std::uint64_t end = section.offsets[row + 1];
  if (begin > end || end > section.payload.size) {
    throw CorruptDataError(section_label(names_, s) + " row " + std::to_string(row) +
                           ": offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                           ") do not lie inside its " + std::to_string(section.payload.size) +
                           "-byte payload");
  }
  return section.payload.sub(static_cast<std::size_t>(begin),
                             static_cast<std::size_t>(end - begin));
}

std::string IndexedSections::row_label(std::int64_t index) const {
  const auto [s, row] = locate(starts_, static_cast<std::size_t>(index));
  return section_label(names_, s) + " row " + std::to_string(row);
}

std::uint64_t IndexedSections::plan(const std::int64_t* indices, std::size_t count,
                                    std::uint64_t* out_offsets) const {
  std::uint64_t position = 0;
  out_offsets[0] = 0;
  for (std::size_t i = 0; i < count; ++i) {
    position += row_bytes(indices[i], i).size;
    out_offsets[i + 1] = position;
  }
  return position;
}

std::vector<ByteSpan> IndexedSections::spans(const std::int64_t* indices,
                                             std::size_t count) const {
  std::vector<ByteSpan> out(count);
  for (std::size_t i = 0; i < count; ++i) out[i] = row_bytes(indices[i], i);
  return out;
}

void IndexedSections::copy(const std::int64_t* indices, std::size_t count,
                           const std::uint64_t* out_offsets, MutableByteSpan dst,
                           std::size_t threads) const {
  const std::uint64_t needed = out_offsets[count];
  if (dst.size < needed) {
    throw FormatError("destination is " + std::to_string(dst.size) + " bytes; the batch needs " +
                      std::to_string(needed));
  }
  const std::size_t tasks = tasks_for(static_cast<std::size_t>(needed), count, threads);
  ThreadPool::shared().parallel_for(tasks, threads, [&](std::size_t task) {
    const std::size_t begin = count * task / tasks;
    const std::size_t end = count * (task + 1) / tasks;
    for (std::size_t i = begin; i < end; ++i) {
      // plan() validated the indices; the source range is checked again because the offsets
      // live in a mapped file that could have changed since.
      const auto [s, row] = locate(starts_, static_cast<std::size_t>(indices[i]));
      const IndexedSection& section = sections_[s];
      const std::uint64_t length = out_offsets[i + 1] - out_offsets[i];
      const std::uint64_t begin = section.offsets[row];
      if (length > section.payload.size || begin > section.payload.size - length) {
        throw CorruptDataError(section_label(names_, s) + " row " + std::to_string(row) +
                               ": offsets changed while the batch was copied");
      }
      if (length != 0) std::memcpy(dst.data + out_offsets[i], section.payload.data + begin, length);
    }
  });
}

void IndexedSections::decode(const std::int64_t* indices, std::size_t count, DType dtype,
                             const std::vector<std::uint64_t>& shape, MutableByteSpan dst,
                             std::size_t threads) const {
  if (shape.empty() || shape[0] != count) {
    throw FormatError("decode: out has " +
                      (shape.empty() ? std::string("no axis 0 (a 0-d array)")
                                     : std::to_string(shape[0]) + " rows") +
                      " for " + std::to_string(count) + " indices");
  }
  // The blobs are decoded in place from the caller's payloads: no copy of the compressed rows.
  const std::vector<ByteSpan> blobs = spans(indices, count);
  decode_batch(blobs, dtype, shape, dst, threads,
               [&](std::size_t i) { return row_label(indices[i]); });
}

RaggedPlan IndexedSections::plan_ragged(const std::int64_t* indices, std::size_t count,
                                        DType dtype, std::optional<std::size_t> ndim) const {
  const BlobLabel label = [&](std::size_t i) { return row_label(indices[i]); };
  return pydata::plan_ragged(spans(indices, count), dtype, ndim, &label);
}

}  // namespace pydata
