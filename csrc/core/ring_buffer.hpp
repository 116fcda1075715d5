#pragma once
/// RingBuffer<T>: a bounded multi-producer multi-consumer queue of small trivially copyable
/// values (pydata uses `RingBuffer<std::uint64_t>` for slot and sample ids).
///
/// The non-blocking operations are Vyukov's bounded MPMC array: each cell carries a sequence
/// number that says whose turn it is, and producers and consumers claim positions with one CAS
/// on their own counter, so no lock is taken. The blocking operations spin briefly and then sleep
/// on a `WaitSet` (core/interruptible_wait.hpp) in bounded slices, checking an interrupt callback
/// between slices. `close()` ends the stream: see its documentation for the contract.

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "core/errors.hpp"
#include "core/interruptible_wait.hpp"

namespace pydata {

/// A bounded MPMC FIFO of `T` with exactly `capacity` slots (not rounded up).
///
/// Thread-safe: any number of threads may push, pop and close at once. Every value accepted by
/// a push is returned by exactly one pop, in claim order per position (FIFO when quiescent).
/// Progress: the try_* calls never block; a thread preempted between claiming and publishing a
/// cell delays only the consumer of that cell (the known limit of Vyukov's design).
template <class T>
class RingBuffer {
  static_assert(std::is_trivially_copyable_v<T> && std::is_nothrow_default_constructible_v<T>,
                "RingBuffer holds plain values such as ids");

 public:
  /// The largest capacity accepted (cells take 16 bytes each for 8-byte T).
  static constexpr std::size_t kMaxCapacity = std::size_t{1} << 32;

  /// An open, empty ring with room for exactly `capacity` values.
  /// Throws std::invalid_argument unless 1 <= capacity <= kMaxCapacity.
  explicit RingBuffer(std::size_t capacity)
      : capacity_(checked(capacity)), cells_(new Cell[capacity]) {
    for (std::size_t i = 0; i < capacity_; ++i) {
      cells_[i].seq.store(2 * i, std::memory_order_relaxed);
    }
  }
  RingBuffer(const RingBuffer&) = delete;
  RingBuffer& operator=(const RingBuffer&) = delete;

  /// Appends `value` if there is room. Returns false when full; never blocks.
  /// Throws ClosedError when the ring is closed.
  [[nodiscard]] bool try_push(T value) {
    const Step step = push_once(value);
    if (step == Step::kClosed) throw ClosedError("RingBuffer.push: the ring is closed");
    if (step == Step::kRetry) return false;
    not_empty_.notify_all();
    return true;
  }

  /// Takes the oldest value into `out` if there is one. Returns false when empty (or when the
  /// next value's push is still in flight); never blocks.
  /// Throws ClosedError when the ring is closed and every value has been taken.
  [[nodiscard]] bool try_pop(T& out) {
    const Step step = pop_once(out);
    if (step == Step::kClosed) throw ClosedError("RingBuffer.pop: the ring is closed and drained");
    if (step == Step::kRetry) return false;
    not_full_.notify_all();
    return true;
  }

  /// Appends `value`, waiting for room until `deadline`. `interrupted` is called between wait
  /// slices without locks held. Throws ClosedError (closed before or while waiting),
  /// WaitTimeout (deadline passed), WaitInterrupted (`interrupted()` returned true).
  template <class InterruptFn = NeverInterrupted>
  void push(T value, Deadline deadline = kNoDeadline, InterruptFn&& interrupted = {}) {
    if (!not_full_.wait([&] { return push_or_throw(value, "RingBuffer.push: the ring is closed"); },
                        deadline, interrupted)) {
      throw WaitTimeout("RingBuffer.push: timed out waiting for room (the ring stayed full at " +
                        std::to_string(capacity_) + " tokens)");
    }
    not_empty_.notify_all();
  }

  /// Takes the oldest value, waiting for one until `deadline`. After `close()` it still returns
  /// what is left. Throws ClosedError (closed and drained), WaitTimeout, WaitInterrupted.
  template <class InterruptFn = NeverInterrupted>
  [[nodiscard]] T pop(Deadline deadline = kNoDeadline, InterruptFn&& interrupted = {}) {
    T out{};
    wait_for_first(out, deadline, interrupted, "RingBuffer.pop");
    not_full_.notify_all();
    return out;
  }

  /// Pushes `values[0..count)` in order, each waiting for room as `push` does, all by one
  /// `deadline`. On ClosedError or WaitTimeout the message says how many were pushed; those
  /// stay in the ring. WaitInterrupted gives no count.
  template <class InterruptFn = NeverInterrupted>
  void push_many(const T* values, std::size_t count, Deadline deadline = kNoDeadline,
                 InterruptFn&& interrupted = {}) {
    std::size_t done = 0;
    while (done < count) {
      const std::size_t before = done;
      Step step = Step::kDone;
      while (done < count && (step = push_once(values[done])) == Step::kDone) ++done;
      if (done > before) not_empty_.notify_all();  // before sleeping: consumers must see these
      if (done == count) return;
      const std::string closed =
          "RingBuffer.push_many: the ring is closed (" + progress(done, count) + ")";
      if (step == Step::kClosed) throw ClosedError(closed);
      if (!not_full_.wait([&] { return push_or_throw(values[done], closed.c_str()); }, deadline,
                          interrupted)) {
        throw WaitTimeout("RingBuffer.push_many: timed out waiting for room (" +
                          progress(done, count) + ")");
      }
      ++done;
      not_empty_.notify_all();
    }
  }

  /// Waits for one value as `pop` does, then takes as many more as are ready, without waiting,
  /// up to `count` in all. Returns how many were written to `out[0..)`. Throws
  /// std::invalid_argument when `count` is 0, and what `pop` throws.
  template <class InterruptFn = NeverInterrupted>
  [[nodiscard]] std::size_t pop_many(T* out, std::size_t count, Deadline deadline = kNoDeadline,
                                     InterruptFn&& interrupted = {}) {
    if (count == 0) throw std::invalid_argument("RingBuffer.pop_many: the output has length 0");
    wait_for_first(out[0], deadline, interrupted, "RingBuffer.pop_many");
    std::size_t n = 1;
    while (n < count && pop_once(out[n]) == Step::kDone) ++n;  // kClosed: the next call raises
    not_full_.notify_all();
    return n;
  }

  /// Ends the stream and wakes every waiter. Afterwards every push raises ClosedError; pops
  /// return the values still in the ring (and any push that had claimed a cell before the
  /// close), then raise ClosedError. Idempotent; thread-safe; never blocks for long.
  void close() noexcept {
    // seq_cst: the state change of the WaitSet protocol for both sets. Setting the bit makes
    // every later CAS on enqueue_pos_ fail, so the claimed count is final from here on.
    enqueue_pos_.fetch_or(kClosedBit, std::memory_order_seq_cst);
    not_empty_.notify_all();
    not_full_.notify_all();
  }

  /// Whether `close()` has been called.
  [[nodiscard]] bool closed() const noexcept {
    return (enqueue_pos_.load(std::memory_order_relaxed) & kClosedBit) != 0;
  }

  /// Values in the ring: exact when no call is in flight, approximate (within [0, capacity])
  /// while others push and pop.
  [[nodiscard]] std::size_t size() const noexcept {
    const std::uint64_t head = dequeue_pos_.load(std::memory_order_relaxed);
    const std::uint64_t tail = enqueue_pos_.load(std::memory_order_relaxed) & ~kClosedBit;
    if (tail <= head) return 0;
    return static_cast<std::size_t>(std::min<std::uint64_t>(tail - head, capacity_));
  }

  /// The capacity given to the constructor (exact: not rounded).
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }

  /// Threads asleep in a blocking push or pop right now (after their short spin).
  [[nodiscard]] std::size_t waiters() const noexcept {
    return not_empty_.waiters() + not_full_.waiters();
  }

 private:
  enum class Step { kDone, kRetry, kClosed };  // kRetry: full (push) or empty (pop) right now

  // Sequence numbers count in half-steps so that capacity 1 works: for position p the cell
  // reads 2p when free for p's producer, 2p + 1 when holding p's value, and 2(p + capacity)
  // once p's consumer hands it to the next lap.
  struct Cell {
    std::atomic<std::uint64_t> seq;
    T value;
  };

  static constexpr std::uint64_t kClosedBit = std::uint64_t{1} << 63;
  static constexpr std::size_t kCacheLine = 64;

  static std::size_t checked(std::size_t capacity) {
    if (capacity == 0 || capacity > kMaxCapacity) {
      throw std::invalid_argument("RingBuffer: capacity must be between 1 and " +
                                  std::to_string(kMaxCapacity) + ", got " +
                                  std::to_string(capacity));
    }
    return capacity;
  }

  static std::string progress(std::size_t done, std::size_t count) {
    return std::to_string(done) + " of " + std::to_string(count) + " tokens were pushed";
  }

  Step push_once(T value) noexcept {
    // seq_cst: a producer's WaitSet re-check must see close()'s fetch_or (WaitSet protocol).
    std::uint64_t pos = enqueue_pos_.load(std::memory_order_seq_cst);
    for (;;) {
      if ((pos & kClosedBit) != 0) return Step::kClosed;
      Cell& cell = cells_[pos % capacity_];
      // Acquire pairs with the store in pop_once() that freed the cell (the old value was read
      // before we overwrite it); seq_cst for the WaitSet protocol of not_full_.
      const std::uint64_t seq = cell.seq.load(std::memory_order_seq_cst);
      const auto diff = static_cast<std::int64_t>(seq - 2 * pos);
      if (diff == 0) {
        // Relaxed: the counter only hands out positions; the cell's seq carries the data.
        if (enqueue_pos_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          cell.value = value;
          // Release pairs with the acquire load in pop_once(); seq_cst for not_empty_'s protocol.
          cell.seq.store(2 * pos + 1, std::memory_order_seq_cst);
          return Step::kDone;
        }
      } else if (diff < 0) {
        return Step::kRetry;  // the cell still holds the value from one lap ago: full
      } else {
        pos = enqueue_pos_.load(std::memory_order_seq_cst);  // another producer took pos
      }
    }
  }

  Step pop_once(T& out) noexcept {
    std::uint64_t pos = dequeue_pos_.load(std::memory_order_relaxed);
    for (;;) {
      Cell& cell = cells_[pos % capacity_];
      // Acquire pairs with the publishing store in push_once(); seq_cst for not_empty_'s protocol.
      const std::uint64_t seq = cell.seq.load(std::memory_order_seq_cst);
      const auto diff = static_cast<std::int64_t>(seq - (2 * pos + 1));
      if (diff == 0) {
        if (dequeue_pos_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          out = cell.value;
          // Release pairs with the acquire load in push_once(); seq_cst for not_full_'s protocol.
          cell.seq.store(2 * (pos + capacity_), std::memory_order_seq_cst);
          return Step::kDone;
        }
      } else if (diff < 0) {
        // Nothing published at pos. Once closed, the claimed count `end` is final: if pos is not
        // below it, no push will ever fill pos, so the stream has ended for us. A stale pos can
        // only make this say "empty", never "closed" (pos was claimed, so end > pos).
        const std::uint64_t end = enqueue_pos_.load(std::memory_order_seq_cst);
        const bool drained = (end & kClosedBit) != 0 && (end & ~kClosedBit) <= pos;
        return drained ? Step::kClosed : Step::kRetry;
      } else {
        pos = dequeue_pos_.load(std::memory_order_relaxed);  // another consumer took pos
      }
    }
  }

  bool push_or_throw(T value, const char* closed_message) {
    const Step step = push_once(value);
    if (step == Step::kClosed) throw ClosedError(closed_message);
    return step == Step::kDone;
  }

  template <class InterruptFn>
  void wait_for_first(T& out, Deadline deadline, InterruptFn& interrupted, const char* who) {
    const auto take = [&] {
      const Step step = pop_once(out);
      if (step == Step::kClosed) {
        throw ClosedError(std::string(who) + ": the ring is closed and drained");
      }
      return step == Step::kDone;
    };
    if (!not_empty_.wait(take, deadline, interrupted)) {
      throw WaitTimeout(std::string(who) +
                        ": timed out waiting for a token (the ring stayed empty)");
    }
  }

  const std::size_t capacity_;
  const std::unique_ptr<Cell[]> cells_;
  // Positions claimed by pushes, with kClosedBit set once closed.
  alignas(kCacheLine) std::atomic<std::uint64_t> enqueue_pos_{0};
  alignas(kCacheLine) std::atomic<std::uint64_t> dequeue_pos_{0};  // positions claimed by pops
  alignas(kCacheLine) WaitSet not_empty_;                          // consumers sleep here
  alignas(kCacheLine) WaitSet not_full_;                           // producers sleep here
};

}  // namespace pydata
