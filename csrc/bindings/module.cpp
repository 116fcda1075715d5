#include "bindings/registration.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() =
      "pydata's compiled core: ring buffer, memory-mapped files, multi-threaded batch gather, "
      "tensor codecs and checksums. Heavy calls release the GIL. Import names from `pydata`.";
  namespace b = pydata::bindings;
  b::register_errors(m);  // first: every later registration may raise translated errors
  b::register_ring_buffer(m);
  b::register_mapped_file(m);
  b::register_file_reader(m);
  b::register_gather(m);
  b::register_codec(m);
  b::register_checksum(m);
}
