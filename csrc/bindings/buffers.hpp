#pragma once
/// Conversions between Python buffers / numpy arrays and core spans. Each helper checks what
/// the core cannot (contiguity, writability) and names the argument in its error. Call them
/// with the GIL held; the returned spans stay valid while the Python object is alive.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "core/span.hpp"

namespace pydata::bindings {

/// A read-only view of any C-contiguous Python buffer (bytes, memoryview, numpy array).
/// Holds the buffer request open, so keep it alive for as long as `span` is used.
struct ReadableBuffer {
  pybind11::buffer_info info;
  ByteSpan span;
};

/// Requests a C-contiguous buffer from `obj`; raises TypeError/ValueError naming `arg`.
inline ReadableBuffer readable_buffer(const pybind11::handle& obj, const char* arg) {
  if (!PyObject_CheckBuffer(obj.ptr())) {
    throw pybind11::type_error(std::string(arg) + ": expected a bytes-like object or array, got " +
                               std::string(pybind11::str(obj.get_type().attr("__name__"))));
  }
  Py_buffer view;
  if (PyObject_GetBuffer(obj.ptr(), &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
    PyErr_Clear();
    throw pybind11::value_error(std::string(arg) + ": the buffer must be C-contiguous");
  }
  ReadableBuffer out{pybind11::buffer_info(&view, /*ownview=*/true), {}};
  out.span = {static_cast<const std::uint8_t*>(out.info.ptr),
              static_cast<std::size_t>(out.info.size * out.info.itemsize)};
  return out;
}

/// The writable bytes of a C-contiguous numpy array; raises ValueError naming `arg` if it is
/// read-only or not contiguous (a strided destination would silently drop writes).
inline MutableByteSpan writable_bytes(pybind11::array& arr, const char* arg) {
  if (!(arr.flags() & pybind11::array::c_style)) {
    throw pybind11::value_error(std::string(arg) +
                                ": the output array must be C-contiguous (got a strided view)");
  }
  if (!arr.writeable()) {
    throw pybind11::value_error(std::string(arg) + ": the output array is read-only");
  }
  return {static_cast<std::uint8_t*>(arr.mutable_data()), static_cast<std::size_t>(arr.nbytes())};
}

/// The bytes of a C-contiguous numpy array, read-only; raises ValueError naming `arg`.
inline ByteSpan contiguous_bytes(const pybind11::array& arr, const char* arg) {
  if (!(arr.flags() & pybind11::array::c_style)) {
    throw pybind11::value_error(std::string(arg) + ": the array must be C-contiguous");
  }
  return {static_cast<const std::uint8_t*>(arr.data()), static_cast<std::size_t>(arr.nbytes())};
}

}  // namespace pydata::bindings
