#include "core/thread_pool.hpp"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <string>

namespace pydata {

struct ThreadPool::Job {
  void (*fn)(void*, std::size_t);
  void* ctx;
  std::size_t tasks;
  std::size_t helpers_wanted;
  std::size_t helpers_joined = 0;  // guarded by the pool's mu_
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;  // first failure; written once, guarded by `failed`
  std::mutex mu;
  std::condition_variable helpers_done;
  int active_helpers = 0;  // guarded by mu
};

ThreadPool::ThreadPool(std::size_t workers) {
  threads_.reserve(workers);
  for (std::size_t i = 0; i < workers; ++i) threads_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& t : threads_) t.join();
}

void ThreadPool::work_on(Job& job) {
  for (;;) {
    const std::size_t i = job.next.fetch_add(1, std::memory_order_relaxed);
    if (i >= job.tasks) return;
    if (job.failed.load(std::memory_order_acquire)) continue;  // drain the rest unrun
    try {
      job.fn(job.ctx, i);
    } catch (...) {
      bool expected = false;
      // Only the first thrower stores its exception; the flag's release publishes it.
      if (job.failed.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) {
        job.error = std::current_exception();
      }
    }
  }
}

void ThreadPool::worker_loop() {
  for (;;) {
    Job* job = nullptr;
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      job = queue_.front();
      if (++job->helpers_joined >= job->helpers_wanted) queue_.pop_front();
      std::lock_guard<std::mutex> job_lock(job->mu);
      ++job->active_helpers;
    }
    work_on(*job);
    std::lock_guard<std::mutex> job_lock(job->mu);
    if (--job->active_helpers == 0) job->helpers_done.notify_all();
  }
}

void ThreadPool::run(std::size_t tasks, std::size_t max_threads, void (*fn)(void*, std::size_t),
                     void* ctx) {
  if (tasks == 0) return;
  Job job;
  job.fn = fn;
  job.ctx = ctx;
  job.tasks = tasks;
  job.helpers_wanted = std::min({max_threads > 0 ? max_threads - 1 : 0, tasks - 1, workers()});
  if (job.helpers_wanted > 0) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(&job);
    }
    for (std::size_t i = 0; i < job.helpers_wanted; ++i) wake_.notify_one();
  }
  work_on(job);
  if (job.helpers_wanted > 0) {
    {
      // Once off the queue no new helper can join, so active_helpers only falls from here.
      std::lock_guard<std::mutex> lock(mu_);
      auto it = std::find(queue_.begin(), queue_.end(), &job);
      if (it != queue_.end()) queue_.erase(it);
    }
    std::unique_lock<std::mutex> job_lock(job.mu);
    job.helpers_done.wait(job_lock, [&job] { return job.active_helpers == 0; });
  }
  if (job.failed.load(std::memory_order_acquire)) std::rethrow_exception(job.error);
}

std::size_t ThreadPool::default_threads() {
  if (const char* env = std::getenv("PYDATA_NUM_THREADS")) {
    const long n = std::strtol(env, nullptr, 10);
    if (n > 0) return static_cast<std::size_t>(n);
  }
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    return std::max(1, CPU_COUNT(&set));
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

namespace {
std::atomic<ThreadPool*> g_shared{nullptr};
std::mutex g_shared_mu;

// Threads do not survive fork(): a child that used the parent's pool would wait forever. The
// child forgets the parent's pool (deliberately leaked: its mutexes may be held by threads that
// no longer exist) and builds its own on first use.
void forget_pool_in_child() { g_shared.store(nullptr, std::memory_order_relaxed); }
}  // namespace

ThreadPool& ThreadPool::shared() {
  ThreadPool* pool = g_shared.load(std::memory_order_acquire);
  if (pool != nullptr) return *pool;
  std::lock_guard<std::mutex> lock(g_shared_mu);
  pool = g_shared.load(std::memory_order_relaxed);
  if (pool == nullptr) {
    static const bool registered = [] { return pthread_atfork(nullptr, nullptr, forget_pool_in_child) == 0; }();
    (void)registered;
    // Never destroyed: worker threads must not be joined during static destruction at exit.
    pool = new ThreadPool(default_threads());
    g_shared.store(pool, std::memory_order_release);
  }
  return *pool;
}

}  // namespace pydata
