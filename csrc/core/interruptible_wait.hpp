#pragma once
/// Blocking waits that always have a way out. A `WaitSet` is an eventcount: threads that must
/// wait for some state change (a token to pop, room to push) spin briefly, then sleep on a
/// condition variable in bounded slices; between slices they call an interrupt callback that the
/// caller supplies (the Python binding runs signal handlers there, so Ctrl-C works). Threads that
/// change the state notify only when someone sleeps, so the uncontended path takes no lock.
/// Nothing here knows Python.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

namespace pydata {

/// The clock of every deadline: monotonic, unaffected by changes to the wall clock.
using WaitClock = std::chrono::steady_clock;
/// The point in time by which a blocking call gives up.
using Deadline = WaitClock::time_point;
/// "Wait for as long as it takes" (still interruptible and woken by `close()`).
inline constexpr Deadline kNoDeadline = Deadline::max();
/// The longest a waiter sleeps before it calls its interrupt callback again.
inline constexpr std::chrono::milliseconds kWaitSlice{20};

/// Thrown by a blocking wait when its interrupt callback returned true. The callback's owner
/// knows why (the Python binding: a signal handler raised) and turns this into its own error.
class WaitInterrupted : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The deadline `seconds` from now. `std::nullopt`, +inf and anything past ~30 years mean
/// `kNoDeadline`; 0 means "now" (one more try, then time out).
/// Throws std::invalid_argument when `seconds` is negative or NaN.
[[nodiscard]] inline Deadline deadline_after(std::optional<double> seconds) {
  if (!seconds) return kNoDeadline;
  const double s = *seconds;
  if (std::isnan(s) || s < 0) {
    throw std::invalid_argument("timeout must be None or a number of seconds >= 0, got " +
                                std::to_string(s));
  }
  if (s > 1e9) return kNoDeadline;  // also keeps the nanosecond conversion below from overflowing
  return WaitClock::now() +
         std::chrono::duration_cast<WaitClock::duration>(std::chrono::duration<double>(s));
}

/// An interrupt callback that never fires, for C++ callers with no signals to honour.
struct NeverInterrupted {
  /// Always false: keep waiting.
  bool operator()() const noexcept { return false; }
};

namespace detail {
/// Tells the CPU that this thread is spinning (cheaper for its hyper-thread sibling).
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}
}  // namespace detail

/// An eventcount: a waiter counter plus a mutex and condition variable.
///
/// Protocol (the caller's side of it): the state change that can make a waiter's `try_once`
/// succeed must be a seq_cst store or read-modify-write, made *before* `notify_all()`, and
/// `try_once` must read that state with seq_cst loads. Then a waiter cannot miss a wake-up: see
/// `wait()` for the pairing. Thread-safe; never blocks on anything but its own short mutex.
class WaitSet {
 public:
  WaitSet() = default;
  WaitSet(const WaitSet&) = delete;
  WaitSet& operator=(const WaitSet&) = delete;

  /// Wakes every sleeping waiter so that it tries again. Costs one seq_cst load when nobody
  /// waits. Call it after the state change, and never while holding another WaitSet's wait.
  void notify_all() noexcept {
    // seq_cst load: pairs with the seq_cst increment in wait() (see there).
    if (waiters_.load(std::memory_order_seq_cst) == 0) return;
    // Taking the mutex orders us after a waiter that is between its re-check and its sleep.
    { std::lock_guard<std::mutex> lock(mu_); }
    cv_.notify_all();
  }

  /// Calls `try_once()` until it returns true (then returns true) or `deadline` passes (then
  /// returns false). Spins a few times first, then sleeps until notified or for at most
  /// `kWaitSlice`; at least once per slice it calls `interrupted()` without holding any lock,
  /// and throws WaitInterrupted if that returns true. `try_once` runs under the internal mutex:
  /// it must not block or notify a WaitSet. Exceptions from either callback propagate.
  template <class TryOnce, class InterruptFn>
  [[nodiscard]] bool wait(TryOnce&& try_once, Deadline deadline, InterruptFn&& interrupted) {
    for (int i = 0; i < kSpins; ++i) {
      if (try_once()) return true;
      if (i < kPauses) {
        detail::cpu_relax();
      } else {
        std::this_thread::yield();
      }
    }
    std::unique_lock<std::mutex> lock(mu_);
    // Store-buffering pairing: this seq_cst increment, then the seq_cst loads in try_once(),
    // against the notifier's seq_cst state change, then its seq_cst load in notify_all(). In
    // the single total order either our re-check sees the change, or the notifier sees us
    // counted and (through mu_) wakes us. The count stays up across slices, so each later
    // re-check under mu_ is covered the same way.
    waiters_.fetch_add(1, std::memory_order_seq_cst);
    const Uncount uncount{waiters_};
    Deadline next_check = WaitClock::now() + kWaitSlice;
    for (;;) {
      if (try_once()) return true;
      const Deadline now = WaitClock::now();
      if (now >= deadline) return false;
      if (now >= next_check) {
        lock.unlock();  // the callback may take other locks (the GIL): never hold mu_ there
        if (interrupted()) throw WaitInterrupted("wait interrupted");
        lock.lock();
        next_check = WaitClock::now() + kWaitSlice;
        continue;  // re-check under mu_ before sleeping again
      }
      cv_.wait_until(lock, std::min(deadline, next_check));
    }
  }

  /// Threads asleep (or between slices) in `wait()` right now; approximate under concurrency.
  [[nodiscard]] std::size_t waiters() const noexcept {
    return waiters_.load(std::memory_order_relaxed);
  }

 private:
  struct Uncount {
    std::atomic<std::size_t>& count;
    ~Uncount() { count.fetch_sub(1, std::memory_order_relaxed); }
  };

  static constexpr int kSpins = 32;  // tries before sleeping: a few pauses, then yields
  static constexpr int kPauses = 8;

  std::atomic<std::size_t> waiters_{0};
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace pydata
