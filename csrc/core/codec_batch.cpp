// Running codecs on many threads: the per-thread scratch buffers and batch decoding.
#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>

#include "core/codec_detail.hpp"
#include "core/errors.hpp"
#include "core/thread_pool.hpp"

namespace pydata {
namespace detail {
namespace {

struct ThreadScratch {
  std::unique_ptr<std::uint8_t[]> buffer;
  std::size_t capacity = 0;
  bool leased = false;
};
thread_local ThreadScratch t_scratch;
constexpr std::size_t kKeepScratch = std::size_t{64} << 20;

}  // namespace

ScratchLease::ScratchLease(std::size_t bytes) {
  ThreadScratch& s = t_scratch;
  if (s.leased) throw std::logic_error("ScratchLease: nested lease on one thread");
  if (s.capacity < bytes || !s.buffer) {
    // Grow geometrically so a stream of slowly growing blobs does not reallocate each time.
    const std::size_t grown = std::max({bytes, s.capacity + s.capacity / 2, std::size_t{4096}});
    s.buffer.reset(new std::uint8_t[grown]);
    s.capacity = grown;
  }
  s.leased = true;
  data_ = s.buffer.get();
}

ScratchLease::~ScratchLease() {
  ThreadScratch& s = t_scratch;
  s.leased = false;
  if (s.capacity > kKeepScratch) {
    s.buffer.reset();
    s.capacity = 0;
  }
}

}  // namespace detail

namespace {

// Decodes blob i into row i of dst; `label` (may be null) names blobs in errors.
void decode_rows(const std::vector<ByteSpan>& blobs, DType dtype,
                 const std::vector<std::uint64_t>& shape, MutableByteSpan dst,
                 std::size_t threads, const BlobLabel* label) {
  const std::size_t n = blobs.size();
  if (shape.empty() || shape[0] != n) {
    throw FormatError("decode_batch: out has " +
                      (shape.empty() ? std::string("no axis 0")
                                     : "axis 0 of length " + std::to_string(shape[0])) +
                      ", expected one row per blob (" + std::to_string(n) + ")");
  }
  if (n == 0) return;
  const auto name = [label](std::size_t i) {
    return label != nullptr ? (*label)(i) : "blob " + std::to_string(i);
  };
  const std::vector<std::uint64_t> sample_shape(shape.begin() + 1, shape.end());
  const std::size_t row_bytes = dst.size / n;
  std::vector<BlobInfo> infos(n);
  for (std::size_t i = 0; i < n; ++i) {
    try {
      infos[i] = read_blob_info(blobs[i]);
    } catch (const CorruptDataError& e) {
      throw CorruptDataError(name(i) + ": " + e.what());
    }
    check_destination(infos[i], dtype, sample_shape,
                      "decode_batch: out[" + std::to_string(i) + "]" +
                          (label != nullptr ? " (" + (*label)(i) + ")" : std::string()));
  }
  ThreadPool::shared().parallel_for(n, threads, [&](std::size_t i) {
    try {
      decode_into(blobs[i], infos[i], dst.sub(i * row_bytes, row_bytes));
    } catch (const CorruptDataError& e) {
      throw CorruptDataError(name(i) + ": " + e.what());
    }
  });
}

}  // namespace

void decode_batch(const std::vector<ByteSpan>& blobs, DType dtype,
                  const std::vector<std::uint64_t>& shape, MutableByteSpan dst,
                  std::size_t threads) {
  decode_rows(blobs, dtype, shape, dst, threads, nullptr);
}

void decode_batch(const std::vector<ByteSpan>& blobs, DType dtype,
                  const std::vector<std::uint64_t>& shape, MutableByteSpan dst,
                  std::size_t threads, const BlobLabel& label) {
  decode_rows(blobs, dtype, shape, dst, threads, &label);
}

}  // namespace pydata
