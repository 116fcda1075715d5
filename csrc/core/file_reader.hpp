#pragma once
/// FileReader: reads byte ranges of several files with plain pread() into one caller-provided
/// buffer, split over the shared thread pool. The alternative to MappedFile for file systems
/// where page-fault reads are slow (NFS, FUSE, Lustre): each range is one or a few large
/// system calls instead of one fault per page.

#include <cstddef>
#include <cstdint>
#include <shared_mutex>
#include <string>
#include <vector>

#include "core/span.hpp"

namespace pydata {

/// Open read-only descriptors of a list of files, and their sizes at open time. Thread-safe:
/// reads run concurrently; `close` waits for the reads in flight to finish.
class FileReader {
 public:
  /// Opens every path read-only (O_RDONLY | O_CLOEXEC) and records its size. Throws OsError
  /// with errno, the call and the path (missing file, permissions, a directory or another
  /// non-regular file); descriptors opened before the failure are closed again.
  explicit FileReader(std::vector<std::string> paths);
  /// Closes the files.
  ~FileReader();
  FileReader(const FileReader&) = delete;
  FileReader& operator=(const FileReader&) = delete;

  /// Number of files.
  [[nodiscard]] std::size_t files() const noexcept { return paths_.size(); }
  /// The paths, as given.
  [[nodiscard]] const std::vector<std::string>& paths() const noexcept { return paths_; }
  /// Each file's size in bytes when it was opened.
  [[nodiscard]] const std::vector<std::uint64_t>& sizes() const noexcept { return sizes_; }
  /// Whether `close` has been called.
  [[nodiscard]] bool closed() const;

  /// Copies range k, bytes [offsets[k], offsets[k] + lengths[k]) of file `file_ids[k]`, to
  /// dst at the sum of lengths[0..k), so the ranges land back to back; returns that sum over
  /// all `count` ranges. Runs on up to `threads` threads of ThreadPool::shared(), split by
  /// bytes (a large range is read in parts); batches under 1 MiB are read on the caller.
  /// Every argument is checked before the first read: throws ClosedError after `close`,
  /// std::out_of_range for a file id that is not a file (naming it and its position),
  /// CorruptDataError "file '<path>': range [a, b) is past its end (<size> bytes)" for a range
  /// outside the file's recorded size, FormatError if dst is smaller than the sum. While
  /// reading, throws CorruptDataError naming the path if the file ended early (it shrank
  /// since open) and OsError with the path for a failed read; dst may then hold part of the
  /// batch.
  std::uint64_t read(const std::int64_t* file_ids, const std::uint64_t* offsets,
                     const std::uint64_t* lengths, std::size_t count, MutableByteSpan dst,
                     std::size_t threads) const;

  /// Closes every file, after the reads in flight have finished. Idempotent.
  void close() noexcept;

 private:
  std::vector<std::string> paths_;
  std::vector<std::uint64_t> sizes_;
  std::vector<int> fds_;          // guarded by mu_: -1 each once closed
  bool closed_ = false;           // guarded by mu_
  mutable std::shared_mutex mu_;  // held shared by a read in flight, exclusive by close
};

}  // namespace pydata
