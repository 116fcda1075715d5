#pragma once
/// ThreadPool: persistent worker threads that run index-parallel loops for the core (batch
/// gather, batch decode). The calling thread always takes part, so `max_threads == 1` runs
/// inline with no hand-off. Worker threads never touch Python.

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace pydata {

/// A fixed set of worker threads shared by every parallel call. Thread-safe: several callers
/// may run loops at once; each loop gets at most the threads it asks for.
class ThreadPool {
 public:
  /// Starts `workers` threads (0 is allowed: every loop then runs on its caller).
  explicit ThreadPool(std::size_t workers);
  /// Stops and joins the workers. Loops still running must have returned.
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  /// Number of worker threads (callers not counted).
  [[nodiscard]] std::size_t workers() const noexcept { return threads_.size(); }

  /// Calls `fn(i)` once for every i in [0, tasks), on the caller plus up to `max_threads - 1`
  /// workers, and returns when all calls have returned. If calls throw, the remaining tasks
  /// are skipped and the first exception is rethrown here, on the calling thread.
  template <class Fn>
  void parallel_for(std::size_t tasks, std::size_t max_threads, Fn&& fn) {
    using F = std::remove_reference_t<Fn>;
    run(tasks, max_threads, [](void* ctx, std::size_t i) { (*static_cast<F*>(ctx))(i); },
        static_cast<void*>(&fn));
  }

  /// The process-wide pool, one worker per CPU this process may run on (or PYDATA_NUM_THREADS).
  /// Created on first use; a forked child gets a fresh pool, since threads do not survive fork.
  [[nodiscard]] static ThreadPool& shared();

  /// CPUs this process may run on (sched affinity), or PYDATA_NUM_THREADS when set; at least 1.
  [[nodiscard]] static std::size_t default_threads();

 private:
  struct Job;
  void run(std::size_t tasks, std::size_t max_threads, void (*fn)(void*, std::size_t), void* ctx);
  void worker_loop();
  static void work_on(Job& job);

  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<Job*> queue_;  // jobs that still accept helpers; guarded by mu_
  bool stopping_ = false;   // guarded by mu_
};

}  // namespace pydata
