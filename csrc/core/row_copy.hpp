#pragma once
/// Copying gathered rows: the inner loop of every batch gather, tuned for rows that lie at
/// random places in a (mapped) file and land back to back in a batch buffer.
///
/// Two measured effects (csrc/README.md, "Row copies"): the hardware prefetcher stops at every
/// 4 KiB page and restarts cold at each new row, so the next row's pages are prefetched while
/// the current one is copied; and a large batch will not stay in cache anyway, so streaming
/// (non-temporal) stores skip reading each destination line before writing it.

#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace pydata::detail {

/// Bytes between software prefetches of a row that is about to be copied: one per page.
constexpr std::size_t kPrefetchStride = 4096;
/// Rows at least this long are streamed when streaming is asked for; shorter ones gain nothing.
constexpr std::size_t kMinStreamRow = 1024;

/// Asks the CPU to start loading [src, src + bytes): the first line of every page.
inline void prefetch_row(const std::uint8_t* src, std::size_t bytes) noexcept {
  for (std::size_t k = 0; k < bytes; k += kPrefetchStride) __builtin_prefetch(src + k, 0, 3);
}

/// Copies `bytes` from src to dst; with `stream`, through non-temporal stores where the CPU has
/// them and dst is 16-byte aligned. Call `end_stream()` before another thread reads dst.
inline void copy_row(std::uint8_t* dst, const std::uint8_t* src, std::size_t bytes,
                     bool stream) noexcept {
#if defined(__SSE2__)
  if (stream && bytes >= kMinStreamRow && reinterpret_cast<std::uintptr_t>(dst) % 16 == 0) {
    std::size_t k = 0;
    for (; k + 64 <= bytes; k += 64) {
      const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + k));
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + k + 16));
      const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + k + 32));
      const __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + k + 48));
      _mm_stream_si128(reinterpret_cast<__m128i*>(dst + k), a);
      _mm_stream_si128(reinterpret_cast<__m128i*>(dst + k + 16), b);
      _mm_stream_si128(reinterpret_cast<__m128i*>(dst + k + 32), c);
      _mm_stream_si128(reinterpret_cast<__m128i*>(dst + k + 48), d);
    }
    std::memcpy(dst + k, src + k, bytes - k);
    return;
  }
#else
  (void)stream;
#endif
  std::memcpy(dst, src, bytes);
}

/// Orders this thread's streaming stores before its later stores (e.g. a completion flag).
inline void end_stream() noexcept {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

}  // namespace pydata::detail
