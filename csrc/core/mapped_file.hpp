#pragma once
/// MappedFile: a memory mapping of a whole file that never writes to it, with page-cache advice
/// and residency queries. Shared through std::shared_ptr so that every view into it (numpy arrays,
/// gather sections) can keep the mapping alive.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/span.hpp"

namespace pydata {

/// A private mmap of one file: the file is opened read-only and never changed. Where the kernel
/// allows it the mapping is copy-on-write, so writes through a view stay private to this
/// process; otherwise it is read-only. Immutable after open, so thread-safe.
class MappedFile {
 public:
  /// Page-cache advice for a byte range (madvise).
  enum class Advice { kNormal, kSequential, kRandom, kWillNeed, kDontNeed };

  /// Opens and maps `path`. Throws OsError (missing file, permissions, a directory),
  /// CorruptDataError if the file is empty or shorter than `min_size` bytes.
  [[nodiscard]] static std::shared_ptr<MappedFile> open(const std::string& path,
                                                         std::size_t min_size = 0);
  /// Unmaps the file.
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  /// The path the file was opened with.
  [[nodiscard]] const std::string& path() const noexcept { return path_; }
  /// File size in bytes at open time.
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  /// Whether writes through the mapping are allowed (copied privately, never reaching the file).
  [[nodiscard]] bool copy_on_write() const noexcept { return copy_on_write_; }
  /// The mapped bytes [offset, offset + length); throws std::out_of_range naming the file and
  /// the range if it does not lie inside the file.
  [[nodiscard]] ByteSpan bytes(std::size_t offset, std::size_t length) const;
  /// The whole file.
  [[nodiscard]] ByteSpan bytes() const noexcept { return {data_, size_}; }

  /// Gives the kernel `advice` for [offset, offset + length) (widened to whole pages).
  void advise(Advice advice, std::size_t offset, std::size_t length) const;
  /// Bytes of [offset, offset + length) that are resident in the page cache now (mincore).
  [[nodiscard]] std::size_t resident_bytes(std::size_t offset, std::size_t length) const;
  /// Reads one byte of every page of [offset, offset + length) so that the pages are resident;
  /// returns the number of pages touched.
  std::size_t prefault(std::size_t offset, std::size_t length) const;

  /// Parses "normal", "sequential", "random", "willneed", "dontneed"; throws
  /// std::invalid_argument naming the accepted values.
  [[nodiscard]] static Advice parse_advice(std::string_view name);

 private:
  MappedFile(std::string path, const std::uint8_t* data, std::size_t size, bool copy_on_write);
  void check_range(std::size_t offset, std::size_t length) const;

  std::string path_;
  const std::uint8_t* data_;
  std::size_t size_;
  bool copy_on_write_;
};

}  // namespace pydata
