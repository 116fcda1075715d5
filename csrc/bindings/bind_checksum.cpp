// Python bindings of core/checksum.hpp.
#include <pybind11/pybind11.h>

#include "bindings/buffers.hpp"
#include "bindings/registration.hpp"
#include "core/checksum.hpp"

namespace py = pybind11;

namespace pydata::bindings {
namespace {

// Below this, releasing and re-taking the GIL costs more than the checksum itself.
constexpr std::size_t kReleaseGilBytes = 64 * 1024;

template <std::uint32_t (*kFn)(ByteSpan, std::uint32_t) noexcept>
std::uint32_t checksum_py(const BytesArg& data, std::uint32_t seed) {
  const ReadableBuffer src = readable_buffer(data, "data");
  if (src.span.size < kReleaseGilBytes) return kFn(src.span, seed);
  std::uint32_t crc;
  {
    py::gil_scoped_release nogil;
    crc = kFn(src.span, seed);
  }
  return crc;
}

}  // namespace

void register_checksum(py::module_& m) {
  m.def("checksum", &checksum_py<&checksum>, py::arg("data"), py::arg("seed") = 0,
        "CRC-32C (Castagnoli) of a bytes-like object, as used by the shard format.\n\n"
        "Runs on the SSE4.2 crc32 instruction when the CPU has it; large inputs release the GIL.\n"
        "checksum(b'123456789') == 0xE3069283.\n\nArgs:\n    data: Any C-contiguous "
        "bytes-like object.\n    seed: The checksum of the preceding bytes, to continue a "
        "stream:\n        checksum(b, checksum(a)) == checksum(a + b). 0 starts a new one.\n\n"
        "Returns:\n    The checksum, an int in [0, 2**32).");
  m.def("_checksum_portable", &checksum_py<&checksum_portable>, py::arg("data"),
        py::arg("seed") = 0,
        "checksum() computed with the portable slicing-by-8 tables (for tests).");
  m.def("_checksum_hardware_available", &checksum_hardware_available,
        "Whether checksum() uses the SSE4.2 crc32 instruction on this CPU.");
}

}  // namespace pydata::bindings
