// RingBuffer for Python: converts arguments, releases the GIL around blocking calls and runs
// signal handlers between wait slices. The queue itself is core/ring_buffer.hpp.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "bindings/registration.hpp"
#include "core/interruptible_wait.hpp"
#include "core/ring_buffer.hpp"

namespace py = pybind11;

namespace pydata::bindings {
namespace {

using Ring = RingBuffer<std::uint64_t>;
using Tokens = py::array_t<std::uint64_t, py::array::c_style>;
using Timeout = std::optional<double>;

// The interrupt callback of every wait: between slices, take the GIL and run pending signal
// handlers (only the main thread runs them). A handler that raised leaves its exception set.
struct CheckSignals {
  bool operator()() const {
    py::gil_scoped_acquire gil;
    return PyErr_CheckSignals() != 0;
  }
};

// Runs `fn` with the GIL released. A wait cut short by a signal handler raises what the handler
// raised (KeyboardInterrupt), once the GIL is held again.
template <class Fn>
auto without_gil(Fn&& fn) {
  try {
    py::gil_scoped_release nogil;
    return fn();
  } catch (const WaitInterrupted&) {
    throw py::error_already_set();
  }
}

void check_1d(const Tokens& tokens, const char* arg) {
  if (tokens.ndim() != 1) {
    throw py::value_error(std::string(arg) + ": expected a 1-D uint64 array, got " +
                          std::to_string(tokens.ndim()) + " dimensions");
  }
}

constexpr const char* kClassDoc =
    R"doc(A bounded lock-free multi-producer multi-consumer queue of uint64 tokens.

Holds exactly `capacity` tokens (not rounded up); every pushed token is popped exactly once.
Blocking calls release the GIL, wait in slices of at most 20 ms and run signal handlers between
them (Ctrl-C raises KeyboardInterrupt in the main thread). `timeout` is in seconds, None for no
limit; running out raises pydata.WaitTimeoutError (a TimeoutError).

Close contract: `close()` wakes every waiter. Then pushes raise pydata.ClosedError; pops return
the tokens left and raise ClosedError once drained: that is how consumers see the end.)doc";

}  // namespace

void register_ring_buffer(py::module_& m) {
  py::class_<Ring>(m, "RingBuffer", kClassDoc)
      .def(py::init([](std::int64_t capacity) {
             if (capacity <= 0) {
               throw py::value_error("RingBuffer: capacity must be positive, got " +
                                     std::to_string(capacity));
             }
             return std::make_unique<Ring>(static_cast<std::size_t>(capacity));
           }),
           py::arg("capacity"),
           "An empty ring for `capacity` tokens. Raises ValueError unless 1 <= capacity <= 2**32.")
      .def("try_push", &Ring::try_push, py::arg("token"),
           "Appends `token` if there is room; returns False when full. Never blocks.\n"
           "Raises ClosedError when closed, TypeError unless 0 <= token < 2**64.")
      .def(
          "try_pop",
          [](Ring& ring) -> std::optional<std::uint64_t> {
            std::uint64_t token = 0;
            if (ring.try_pop(token)) return token;
            return std::nullopt;
          },
          "Takes the oldest token, or returns None when empty. Never blocks.\n"
          "Raises ClosedError when closed and drained.")
      .def(
          "push",
          [](Ring& ring, std::uint64_t token, Timeout timeout) {
            const Deadline deadline = deadline_after(timeout);
            if (ring.try_push(token)) return;  // no GIL hand-off when there is room
            without_gil([&] { ring.push(token, deadline, CheckSignals{}); });
          },
          py::arg("token"), py::arg("timeout") = py::none(),
          "Appends `token`, waiting up to `timeout` seconds for room.\n"
          "Raises ClosedError (closed before or while waiting), WaitTimeoutError, ValueError "
          "(negative timeout), KeyboardInterrupt.")
      .def(
          "pop",
          [](Ring& ring, Timeout timeout) {
            const Deadline deadline = deadline_after(timeout);
            std::uint64_t token = 0;
            if (ring.try_pop(token)) return token;
            return without_gil([&] { return ring.pop(deadline, CheckSignals{}); });
          },
          py::arg("timeout") = py::none(),
          "Takes the oldest token, waiting up to `timeout` seconds for one.\n"
          "Raises ClosedError (closed and drained), WaitTimeoutError, KeyboardInterrupt.")
      .def(
          "push_many",
          [](Ring& ring, Tokens tokens, Timeout timeout) {
            check_1d(tokens, "tokens");
            const std::uint64_t* data = tokens.data();
            const auto count = static_cast<std::size_t>(tokens.shape(0));
            const Deadline deadline = deadline_after(timeout);
            without_gil([&] { ring.push_many(data, count, deadline, CheckSignals{}); });
          },
          py::arg("tokens"), py::arg("timeout") = py::none(),
          "Pushes every token of a 1-D uint64 array in order, waiting for room, all within one "
          "`timeout`; the loop runs in C++ without the GIL.\nRaises ClosedError or "
          "WaitTimeoutError whose message says how many tokens were pushed (those stay in the "
          "ring), KeyboardInterrupt, TypeError (not safely convertible to uint64).")
      .def(
          "pop_many",
          [](Ring& ring, Tokens out, Timeout timeout) {
            check_1d(out, "out");
            std::uint64_t* data = out.mutable_data();  // ValueError when read-only
            const auto count = static_cast<std::size_t>(out.shape(0));
            const Deadline deadline = deadline_after(timeout);
            return without_gil(
                [&] { return ring.pop_many(data, count, deadline, CheckSignals{}); });
          },
          py::arg("out").noconvert(), py::arg("timeout") = py::none(),
          "Waits up to `timeout` seconds for one token, then takes as many more as are ready, "
          "without waiting, up to len(out). Writes them to out[:n] and returns n >= 1.\n`out` "
          "must be a writable C-contiguous 1-D uint64 array of length >= 1.\nRaises ClosedError "
          "(closed and drained), WaitTimeoutError, KeyboardInterrupt, ValueError, TypeError.")
      .def("close", &Ring::close,
           "Ends the stream and wakes every waiter: pushes raise ClosedError from now on; pops "
           "drain what is left, then raise ClosedError. Idempotent.")
      .def_property_readonly("capacity", &Ring::capacity, "Tokens the ring holds when full.")
      .def_property_readonly("closed", &Ring::closed, "Whether close() has been called.")
      .def_property_readonly("_waiters", &Ring::waiters,
                             "Threads asleep in a blocking call right now (for tests).")
      .def("__len__", &Ring::size, "Tokens in the ring; exact only when no call is in flight.")
      .def("__repr__", [](const Ring& ring) {
        return "RingBuffer(capacity=" + std::to_string(ring.capacity()) + ", len=" +
               std::to_string(ring.size()) + (ring.closed() ? ", closed)" : ")");
      });
}

}  // namespace pydata::bindings
