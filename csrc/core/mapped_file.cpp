#include "core/mapped_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <vector>

#include "core/errors.hpp"

namespace pydata {
namespace {

std::size_t page_size() {
  static const std::size_t size = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return size;
}

// Closes the descriptor on every exit path; the mapping does not need it once made.
struct FdCloser {
  int fd;
  ~FdCloser() { ::close(fd); }
};

// The pages [first, last] that hold bytes [offset, offset + length); length > 0.
struct PageRange {
  std::size_t first;
  std::size_t last;
  [[nodiscard]] std::size_t count() const noexcept { return last - first + 1; }
};

PageRange pages_of(std::size_t offset, std::size_t length) {
  return {offset / page_size(), (offset + length - 1) / page_size()};
}

std::string range_text(std::size_t offset, std::size_t length) {
  return "[" + std::to_string(offset) + ", " + std::to_string(offset + length) + ")";
}

}  // namespace

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path, std::size_t min_size) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw OsError(errno, "open", path);
  FdCloser closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw OsError(errno, "stat", path);
  if (S_ISDIR(st.st_mode)) throw OsError(EISDIR, "map", path);
  if (!S_ISREG(st.st_mode)) throw OsError(EINVAL, "map (not a regular file)", path);
  const auto size = static_cast<std::size_t>(st.st_size);
  if (size == 0) {
    throw CorruptDataError("file '" + path + "' is empty (0 bytes); expected data to map");
  }
  if (size < min_size) {
    throw CorruptDataError("file '" + path + "' is " + std::to_string(size) +
                           " bytes; expected at least " + std::to_string(min_size) +
                           " (truncated?)");
  }
  // Private and writable: a write through a view copies that page for this process only and
  // never reaches the file, instead of faulting (SIGSEGV) as a PROT_READ mapping would. Pages
  // that are only read stay the shared page-cache pages. MAP_NORESERVE keeps the mapping out
  // of the commit charge; where the kernel still refuses (strict overcommit), map read-only.
  bool copy_on_write = true;
  void* data = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
  if (data == MAP_FAILED && errno == ENOMEM) {
    copy_on_write = false;
    data = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  }
  if (data == MAP_FAILED) throw OsError(errno, "mmap", path);
  return std::shared_ptr<MappedFile>(
      new MappedFile(path, static_cast<const std::uint8_t*>(data), size, copy_on_write));
}

MappedFile::MappedFile(std::string path, const std::uint8_t* data, std::size_t size,
                       bool copy_on_write)
    : path_(std::move(path)), data_(data), size_(size), copy_on_write_(copy_on_write) {}

MappedFile::~MappedFile() { ::munmap(const_cast<std::uint8_t*>(data_), size_); }

void MappedFile::check_range(std::size_t offset, std::size_t length) const {
  if (offset > size_ || length > size_ - offset) {
    throw std::out_of_range("bytes " + range_text(offset, length) + " of '" + path_ +
                            "' are past its end (the file is " + std::to_string(size_) +
                            " bytes)");
  }
}

ByteSpan MappedFile::bytes(std::size_t offset, std::size_t length) const {
  check_range(offset, length);
  return {data_ + offset, length};
}

MappedFile::Advice MappedFile::parse_advice(std::string_view name) {
  if (name == "normal") return Advice::kNormal;
  if (name == "sequential") return Advice::kSequential;
  if (name == "random") return Advice::kRandom;
  if (name == "willneed") return Advice::kWillNeed;
  if (name == "dontneed") return Advice::kDontNeed;
  throw std::invalid_argument("unknown advice '" + std::string(name) +
                              "'; expected one of normal, sequential, random, willneed, dontneed");
}

void MappedFile::advise(Advice advice, std::size_t offset, std::size_t length) const {
  check_range(offset, length);
  if (length == 0) return;
  // madvise wants a page-aligned start; widen the range down to the page boundary.
  const std::size_t start = offset - offset % page_size();
  const std::size_t span = length + (offset - start);
  int flag = MADV_NORMAL;
  switch (advice) {
    case Advice::kNormal: flag = MADV_NORMAL; break;
    case Advice::kSequential: flag = MADV_SEQUENTIAL; break;
    case Advice::kRandom: flag = MADV_RANDOM; break;
    case Advice::kWillNeed: flag = MADV_WILLNEED; break;
    case Advice::kDontNeed: flag = MADV_DONTNEED; break;
  }
  if (::madvise(const_cast<std::uint8_t*>(data_) + start, span, flag) != 0) {
    throw OsError(errno, "madvise " + range_text(offset, length) + " of", path_);
  }
}

std::size_t MappedFile::resident_bytes(std::size_t offset, std::size_t length) const {
  check_range(offset, length);
  if (length == 0) return 0;
  const std::size_t page = page_size();
  const auto [first, last] = pages_of(offset, length);
  std::vector<unsigned char> pages(last - first + 1);
  if (::mincore(const_cast<std::uint8_t*>(data_) + first * page, pages.size() * page,
                pages.data()) != 0) {
    throw OsError(errno, "mincore " + range_text(offset, length) + " of", path_);
  }
  std::size_t resident = 0;
  for (std::size_t p = first; p <= last; ++p) {
    if ((pages[p - first] & 1u) == 0) continue;
    // Count only the part of each page that lies inside the requested range.
    const std::size_t lo = std::max(p * page, offset);
    const std::size_t hi = std::min((p + 1) * page, offset + length);
    resident += hi - lo;
  }
  return resident;
}

std::size_t MappedFile::prefault(std::size_t offset, std::size_t length) const {
  check_range(offset, length);
  if (length == 0) return 0;
  const std::size_t page = page_size();
  const PageRange range = pages_of(offset, length);
  const auto [first, last] = range;
  // volatile: the reads exist only for their side effect of faulting the pages in.
  volatile std::uint8_t sink = 0;
  for (std::size_t p = first; p <= last; ++p) sink = sink + data_[std::max(p * page, offset)];
  (void)sink;
  return range.count();
}

}  // namespace pydata
