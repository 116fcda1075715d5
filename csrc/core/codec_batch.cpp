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

std::string blob_name(const BlobLabel* label, std::size_t i) {
  return label != nullptr ? (*label)(i) : "blob " + std::to_string(i);
}

// Below this many decoded bytes a ragged batch is decoded on the calling thread.
constexpr std::uint64_t kMinParallelRaggedBytes = std::uint64_t{1} << 20;

}  // namespace

RaggedPlan plan_ragged(const std::vector<ByteSpan>& blobs, DType dtype,
                       std::optional<std::size_t> ndim, const BlobLabel* label) {
  RaggedPlan plan;
  plan.ndim = ndim.value_or(1);
  plan.blobs = blobs;
  plan.infos.resize(blobs.size());
  plan.byte_offsets.assign(blobs.size() + 1, 0);
  for (std::size_t i = 0; i < blobs.size(); ++i) {
    BlobInfo& info = plan.infos[i];
    try {
      info = read_blob_info(blobs[i]);
    } catch (const CorruptDataError& e) {
      throw CorruptDataError(blob_name(label, i) + ": " + e.what());
    }
    if (i == 0 && !ndim) plan.ndim = info.shape.size();
    if (info.shape.size() != plan.ndim) {
      throw FormatError(blob_name(label, i) + " has " + std::to_string(info.shape.size()) +
                        " dimension(s), " + (ndim ? "the field has " : "the batch's first row has ") +
                        std::to_string(plan.ndim));
    }
    // Same dtype rule as a fixed destination: only the shape may differ between rows.
    check_destination(info, dtype, info.shape, blob_name(label, i));
    plan.byte_offsets[i + 1] = plan.byte_offsets[i] + info.raw_nbytes;
  }
  return plan;
}

void decode_ragged(const RaggedPlan& plan, MutableByteSpan dst, std::size_t threads,
                   const BlobLabel* label) {
  const std::uint64_t total = plan.byte_offsets.empty() ? 0 : plan.byte_offsets.back();
  if (dst.size != total) {
    throw FormatError("decode_ragged: the destination has " + std::to_string(dst.size) +
                      " bytes, the rows decode to " + std::to_string(total));
  }
  const std::size_t n = plan.blobs.size();
  auto decode_one = [&](std::size_t i) {
    const auto begin = static_cast<std::size_t>(plan.byte_offsets[i]);
    const auto size = static_cast<std::size_t>(plan.byte_offsets[i + 1] - plan.byte_offsets[i]);
    try {
      decode_into(plan.blobs[i], plan.infos[i], dst.sub(begin, size));
    } catch (const CorruptDataError& e) {
      throw CorruptDataError(blob_name(label, i) + ": " + e.what());
    }
  };
  if (threads <= 1 || total < kMinParallelRaggedBytes) {
    for (std::size_t i = 0; i < n; ++i) decode_one(i);
    return;
  }
  ThreadPool::shared().parallel_for(n, threads, decode_one);
}

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
