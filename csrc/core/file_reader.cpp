#include "core/file_reader.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <mutex>
#include <stdexcept>

#include "core/errors.hpp"
#include "core/thread_pool.hpp"

namespace pydata {
namespace {

// Below this many bytes a batch is read on the calling thread, as gather copies it.
constexpr std::uint64_t kMinParallelBytes = std::uint64_t{1} << 20;
// The smallest byte share a task gets, and how many shares each thread gets at most: several
// per thread even out ranges that are cached against ranges that go to the server.
constexpr std::uint64_t kMinShareBytes = std::uint64_t{256} << 10;
constexpr std::size_t kSharesPerThread = 4;
// One pread asks for at most this much; Linux moves at most 0x7ffff000 bytes per call anyway.
constexpr std::size_t kMaxReadBytes = std::size_t{1} << 30;

std::string range_text(std::uint64_t offset, std::uint64_t length) {
  const bool overflows = length > std::numeric_limits<std::uint64_t>::max() - offset;
  return "[" + std::to_string(offset) + ", " +
         (overflows ? std::to_string(offset) + " + " + std::to_string(length)
                    : std::to_string(offset + length)) +
         ")";
}

void close_all(std::vector<int>& fds) noexcept {
  for (int& fd : fds) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
}

// Reads exactly dst.size bytes at `offset`, retrying after EINTR and short reads.
void pread_full(int fd, MutableByteSpan dst, std::uint64_t offset, const std::string& path,
                std::uint64_t size_at_open) {
  std::size_t done = 0;
  while (done < dst.size) {
    const std::size_t want = std::min(dst.size - done, kMaxReadBytes);
    const ssize_t got = ::pread(fd, dst.data + done, want, static_cast<off_t>(offset + done));
    if (got < 0) {
      if (errno == EINTR) continue;
      throw OsError(errno, "pread " + range_text(offset, dst.size) + " of", path);
    }
    if (got == 0) {
      throw CorruptDataError("file '" + path + "': unexpected end of file at byte " +
                             std::to_string(offset + done) + " while reading " +
                             range_text(offset, dst.size) + " (it was " +
                             std::to_string(size_at_open) + " bytes when opened; truncated?)");
    }
    done += static_cast<std::size_t>(got);
  }
}

// Task `task` of `tasks` covers output bytes [share_begin(task), share_begin(task + 1)).
std::uint64_t share_begin(std::uint64_t total, std::size_t tasks, std::size_t task) {
  return total / tasks * task + std::min<std::uint64_t>(task, total % tasks);
}

}  // namespace

FileReader::FileReader(std::vector<std::string> paths) : paths_(std::move(paths)) {
  fds_.reserve(paths_.size());  // so that push_back cannot throw and leak an open descriptor
  sizes_.reserve(paths_.size());
  try {
    for (const std::string& path : paths_) {
      const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) throw OsError(errno, "open", path);
      fds_.push_back(fd);
      struct stat st {};
      if (::fstat(fd, &st) != 0) throw OsError(errno, "stat", path);
      if (S_ISDIR(st.st_mode)) throw OsError(EISDIR, "open", path);
      if (!S_ISREG(st.st_mode)) throw OsError(EINVAL, "open (not a regular file)", path);
      sizes_.push_back(static_cast<std::uint64_t>(st.st_size));
    }
  } catch (...) {
    close_all(fds_);  // the destructor does not run for a constructor that throws
    throw;
  }
}

FileReader::~FileReader() { close(); }

bool FileReader::closed() const {
  std::shared_lock lock(mu_);
  return closed_;
}

void FileReader::close() noexcept {
  std::unique_lock lock(mu_);
  closed_ = true;
  close_all(fds_);
}

std::uint64_t FileReader::read(const std::int64_t* file_ids, const std::uint64_t* offsets,
                               const std::uint64_t* lengths, std::size_t count,
                               MutableByteSpan dst, std::size_t threads) const {
  // Held for the whole read, so close() cannot pull a descriptor from under a pread.
  std::shared_lock lock(mu_);
  if (closed_) {
    throw ClosedError("FileReader of " + std::to_string(paths_.size()) +
                      " file(s) is closed; open a new one to read");
  }
  // Check everything first: a bad batch must not start reading. starts[k] is where range k
  // lands in dst; starts[count] is the total.
  std::vector<std::uint64_t> starts(count + 1, 0);
  for (std::size_t k = 0; k < count; ++k) {
    const std::int64_t id = file_ids[k];
    if (id < 0 || static_cast<std::uint64_t>(id) >= paths_.size()) {
      throw std::out_of_range("file id " + std::to_string(id) + " (position " + std::to_string(k) +
                              " in the batch) is out of range for " +
                              std::to_string(paths_.size()) + " file(s)");
    }
    const auto file = static_cast<std::size_t>(id);
    const std::uint64_t size = sizes_[file];
    if (offsets[k] > size || lengths[k] > size - offsets[k]) {
      throw CorruptDataError("file '" + paths_[file] + "': range " +
                             range_text(offsets[k], lengths[k]) + " is past its end (" +
                             std::to_string(size) + " bytes)");
    }
    if (lengths[k] > std::numeric_limits<std::uint64_t>::max() - starts[k]) {
      throw FormatError("the " + std::to_string(count) + " ranges add up to more than 2^64 bytes");
    }
    starts[k + 1] = starts[k] + lengths[k];
  }
  const std::uint64_t total = starts[count];
  if (dst.size < total) {
    throw FormatError("destination is " + std::to_string(dst.size) + " bytes; the " +
                      std::to_string(count) + " ranges need " + std::to_string(total));
  }
  if (total == 0) return 0;
  // Split by bytes, not by ranges: one large range is read by several threads in parts.
  const std::size_t tasks =
      threads <= 1 || total < kMinParallelBytes
          ? 1
          : static_cast<std::size_t>(
                std::min<std::uint64_t>(threads * kSharesPerThread, total / kMinShareBytes));
  ThreadPool::shared().parallel_for(tasks, threads, [&](std::size_t task) {
    const std::uint64_t lo = share_begin(total, tasks, task);
    const std::uint64_t hi = share_begin(total, tasks, task + 1);
    // The last range that starts at or before lo; zero-length ranges before it are skipped.
    auto k = static_cast<std::size_t>(std::upper_bound(starts.begin(), starts.end(), lo) -
                                      starts.begin()) - 1;
    for (; k < count && starts[k] < hi; ++k) {
      const std::uint64_t begin = std::max(lo, starts[k]);
      const std::uint64_t end = std::min(hi, starts[k + 1]);
      if (begin >= end) continue;
      const auto file = static_cast<std::size_t>(file_ids[k]);
      pread_full(fds_[file], dst.sub(begin, end - begin), offsets[k] + (begin - starts[k]),
                 paths_[file], sizes_[file]);
    }
  });
  return total;
}

}  // namespace pydata
