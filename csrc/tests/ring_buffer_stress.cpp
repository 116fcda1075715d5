// Stress tests for RingBuffer (core/ring_buffer.hpp): many producers and consumers, every token
// delivered exactly once, blocking calls woken by close(), timeouts and interrupts. Run under
// ThreadSanitizer to catch data races (csrc/README.md). Usage: ring_buffer_stress [tokens].
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <thread>
#include <vector>

#include "core/ring_buffer.hpp"

namespace {

using pydata::ClosedError;
using pydata::RingBuffer;
using Ring = RingBuffer<std::uint64_t>;

int g_failures = 0;  // touched by the main thread only

#define CHECK(cond)                                                                     \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);     \
      ++g_failures;                                                                     \
    }                                                                                   \
  } while (0)

template <class E, class Fn>
bool throws(Fn&& fn) {
  try {
    fn();
  } catch (const E&) {
    return true;
  } catch (...) {
    return false;
  }
  return false;
}

// Waits (bounded) until `ring` has `n` sleeping waiters; false if that never happens.
bool wait_for_waiters(const Ring& ring, std::size_t n) {
  for (int i = 0; i < 20000; ++i) {
    if (ring.waiters() == n) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

// Every token in [0, total) appears exactly once across `popped`; and within each consumer's
// list, each producer's tokens (token / per_producer) come in the order they were pushed.
void check_exactly_once(const std::vector<std::vector<std::uint64_t>>& popped, std::size_t total,
                        std::size_t per_producer) {
  std::vector<std::uint8_t> seen(total, 0);
  bool in_range = true;
  bool ordered = true;
  for (const auto& list : popped) {
    std::vector<std::uint64_t> last(total / per_producer + 1, 0);
    std::vector<bool> any(last.size(), false);
    for (const std::uint64_t t : list) {
      if (t >= total) {
        in_range = false;
        continue;
      }
      ++seen[t];
      const std::size_t p = t / per_producer;
      if (any[p] && t <= last[p]) ordered = false;
      any[p] = true;
      last[p] = t;
    }
  }
  std::size_t once = 0;
  for (const std::uint8_t s : seen) once += (s == 1);
  CHECK(in_range);
  CHECK(ordered);
  CHECK(once == total);
}

// Mode of the producer/consumer runs: blocking, non-blocking or batch calls.
enum class Mode { kBlocking, kTry, kBatch };

void run_mpmc(std::size_t tokens, std::size_t capacity, int producers, int consumers, Mode mode) {
  Ring ring(capacity);
  const std::size_t per = tokens / static_cast<std::size_t>(producers);
  const std::size_t total = per * static_cast<std::size_t>(producers);
  std::vector<std::vector<std::uint64_t>> popped(static_cast<std::size_t>(consumers));
  std::atomic<int> unexpected{0};
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      const std::uint64_t first = static_cast<std::uint64_t>(p) * per;
      try {
        if (mode == Mode::kBatch) {
          std::vector<std::uint64_t> chunk;
          for (std::uint64_t t = first; t < first + per; t += chunk.size()) {
            chunk.clear();
            for (std::uint64_t u = t; u < first + per && chunk.size() < 100; ++u) {
              chunk.push_back(u);
            }
            ring.push_many(chunk.data(), chunk.size());
          }
        } else {
          for (std::uint64_t t = first; t < first + per; ++t) {
            if (mode == Mode::kBlocking) {
              ring.push(t);
            } else {
              while (!ring.try_push(t)) std::this_thread::yield();
            }
          }
        }
      } catch (...) {
        unexpected.fetch_add(1);
      }
    });
  }
  for (int c = 0; c < consumers; ++c) {
    threads.emplace_back([&, c] {
      auto& out = popped[static_cast<std::size_t>(c)];
      std::uint64_t batch[37];
      try {
        for (;;) {
          if (mode == Mode::kBatch) {
            const std::size_t n = ring.pop_many(batch, 37);
            out.insert(out.end(), batch, batch + n);
          } else if (mode == Mode::kBlocking) {
            out.push_back(ring.pop());
          } else {
            std::uint64_t t = 0;
            if (ring.try_pop(t)) {
              out.push_back(t);
            } else {
              std::this_thread::yield();
            }
          }
        }
      } catch (const ClosedError&) {
        // the end of the stream
      } catch (...) {
        unexpected.fetch_add(1);
      }
    });
  }
  for (int p = 0; p < producers; ++p) threads[static_cast<std::size_t>(p)].join();
  ring.close();
  for (std::size_t i = static_cast<std::size_t>(producers); i < threads.size(); ++i) {
    threads[i].join();
  }
  CHECK(unexpected.load() == 0);
  CHECK(ring.size() == 0);
  CHECK(ring.waiters() == 0);
  check_exactly_once(popped, total, per);
}

void test_blocking_4x4(std::size_t tokens) { run_mpmc(tokens, 16, 4, 4, Mode::kBlocking); }
void test_blocking_capacity_1(std::size_t tokens) {
  run_mpmc(tokens / 10, 1, 3, 3, Mode::kBlocking);
}
void test_try_4x4(std::size_t tokens) { run_mpmc(tokens / 4, 64, 4, 4, Mode::kTry); }
void test_batch_4x4(std::size_t tokens) { run_mpmc(tokens, 32, 4, 4, Mode::kBatch); }

// close() while producers are still pushing: exactly the accepted tokens come out, once each.
void test_close_races_pushes(std::size_t tokens) {
  Ring ring(8);
  constexpr int kProducers = 3;
  const std::uint64_t per = tokens / 4;
  std::vector<std::vector<std::uint64_t>> pushed(kProducers);
  std::vector<std::uint64_t> popped;
  std::atomic<int> unexpected{0};
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      try {
        for (std::uint64_t t = p * per; t < (p + 1) * per; ++t) {
          ring.push(t);
          pushed[static_cast<std::size_t>(p)].push_back(t);
        }
      } catch (const ClosedError&) {
      } catch (...) {
        unexpected.fetch_add(1);
      }
    });
  }
  std::thread consumer([&] {
    try {
      for (;;) {
        popped.push_back(ring.pop());
        if (popped.size() == per / 2) ring.close();  // mid-stream, with producers blocked
      }
    } catch (const ClosedError&) {
    } catch (...) {
      unexpected.fetch_add(1);
    }
  });
  for (auto& t : producers) t.join();
  consumer.join();
  CHECK(unexpected.load() == 0);
  std::vector<std::uint8_t> count(kProducers * per, 0);
  for (const std::uint64_t t : popped) ++count[t];
  std::size_t accepted = 0;
  bool each_once = true;
  for (const auto& list : pushed) {
    accepted += list.size();
    for (const std::uint64_t t : list) each_once = each_once && count[t] == 1;
  }
  CHECK(each_once);
  CHECK(popped.size() == accepted);
  CHECK(accepted < kProducers * per);
}

void test_capacity_and_fifo(std::size_t) {
  Ring ring(3);
  CHECK(ring.capacity() == 3);
  CHECK(ring.try_push(10) && ring.try_push(11) && ring.try_push(12));
  CHECK(!ring.try_push(13));
  CHECK(ring.size() == 3);
  std::uint64_t t = 0;
  CHECK(ring.try_pop(t) && t == 10);
  CHECK(ring.try_push(13));
  CHECK(ring.pop() == 11 && ring.pop() == 12 && ring.pop() == 13);
  CHECK(!ring.try_pop(t));
  Ring one(1);
  for (std::uint64_t i = 0; i < 1000; ++i) {
    CHECK(one.try_push(i));
    CHECK(!one.try_push(i));
    CHECK(one.pop() == i);
  }
  CHECK(throws<std::invalid_argument>([] { Ring bad(0); }));
  CHECK(throws<std::invalid_argument>([] { Ring bad(Ring::kMaxCapacity + 1); }));
}

void test_drain_after_close(std::size_t) {
  Ring ring(4);
  ring.push(1);
  ring.push(2);
  ring.close();
  ring.close();
  CHECK(ring.closed());
  CHECK(throws<ClosedError>([&] { (void)ring.try_push(3); }));
  CHECK(throws<ClosedError>([&] { ring.push(3); }));
  CHECK(ring.pop() == 1);
  std::uint64_t t = 0;
  CHECK(ring.try_pop(t) && t == 2);
  CHECK(throws<ClosedError>([&] { (void)ring.pop(); }));
  CHECK(throws<ClosedError>([&] { (void)ring.try_pop(t); }));
}

void test_timeouts(std::size_t) {
  Ring ring(1);
  CHECK(throws<pydata::WaitTimeout>([&] { (void)ring.pop(pydata::deadline_after(0.01)); }));
  ring.push(7);
  CHECK(throws<pydata::WaitTimeout>([&] { ring.push(8, pydata::deadline_after(0.0)); }));
  std::uint64_t one[1];
  CHECK(ring.pop_many(one, 1, pydata::deadline_after(0.0)) == 1 && one[0] == 7);
  CHECK(throws<pydata::WaitTimeout>(
      [&] { (void)ring.pop_many(one, 1, pydata::deadline_after(0.0)); }));
  CHECK(throws<std::invalid_argument>([] { (void)pydata::deadline_after(-1.0); }));
  CHECK(ring.waiters() == 0);
}

void test_interrupt(std::size_t) {
  Ring ring(2);
  std::atomic<bool> stop{false};
  std::atomic<int> checks{0};
  bool interrupted = false;
  std::thread waiter([&] {
    interrupted = throws<pydata::WaitInterrupted>([&] {
      (void)ring.pop(pydata::kNoDeadline, [&] {
        checks.fetch_add(1);
        return stop.load();
      });
    });
  });
  const bool asleep = wait_for_waiters(ring, 1);
  stop.store(true);
  waiter.join();
  CHECK(asleep);
  CHECK(interrupted);
  CHECK(checks.load() >= 1);
  ring.push(5);  // still usable
  CHECK(ring.pop() == 5);
}

void test_close_wakes_waiters(std::size_t) {
  Ring empty(2);
  std::vector<std::thread> threads;
  std::atomic<int> woken{0};
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&] { woken += throws<ClosedError>([&] { (void)empty.pop(); }); });
  }
  Ring full(1);
  full.push(0);
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&] { woken += throws<ClosedError>([&] { full.push(1); }); });
  }
  CHECK(wait_for_waiters(empty, 3));
  CHECK(wait_for_waiters(full, 2));
  empty.close();
  full.close();
  for (auto& t : threads) t.join();
  CHECK(woken.load() == 5);
  CHECK(full.pop() == 0);
}

struct Test {
  const char* name;
  void (*fn)(std::size_t);
};

}  // namespace

int main(int argc, char** argv) {
  const std::size_t tokens = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1000000;
  const Test tests[] = {
      {"capacity_and_fifo", test_capacity_and_fifo},
      {"drain_after_close", test_drain_after_close},
      {"timeouts", test_timeouts},
      {"interrupt", test_interrupt},
      {"close_wakes_waiters", test_close_wakes_waiters},
      {"blocking_4x4", test_blocking_4x4},
      {"blocking_capacity_1", test_blocking_capacity_1},
      {"try_4x4", test_try_4x4},
      {"batch_4x4", test_batch_4x4},
      {"close_races_pushes", test_close_races_pushes},
  };
  int passed = 0;
  int failed = 0;
  for (const Test& test : tests) {
    const int before = g_failures;
    const auto start = std::chrono::steady_clock::now();
    try {
      test.fn(tokens);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: unexpected exception: %s\n", test.name, e.what());
      ++g_failures;
    }
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - start)
                        .count();
    const bool ok = g_failures == before;
    std::printf("%-22s %s (%lld ms)\n", test.name, ok ? "ok" : "FAILED",
                static_cast<long long>(ms));
    (ok ? passed : failed) += 1;
  }
  std::printf("%d passed, %d failed (%zu tokens per run)\n", passed, failed, tokens);
  return failed == 0 ? 0 : 1;
}
