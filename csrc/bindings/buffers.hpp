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
                               std::string(pybind11::str(pybind11::type::handle_of(obj).attr("__name__"))));
  }
  // buffer_info takes ownership of a heap-allocated Py_buffer and releases it when destroyed.
  auto* view = new Py_buffer();
  if (PyObject_GetBuffer(obj.ptr(), view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
    delete view;
    PyErr_Clear();
    throw pybind11::value_error(std::string(arg) + ": the buffer must be C-contiguous");
  }
  ReadableBuffer out{pybind11::buffer_info(view, /*ownview=*/true), {}};
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

/// A writable view of any C-contiguous Python buffer (bytearray, memoryview, numpy array).
/// Holds the buffer request open, so keep it alive for as long as `span` is used.
struct WritableBuffer {
  pybind11::buffer_info info;
  MutableByteSpan span;
};

/// Requests a writable C-contiguous buffer from `obj`; raises TypeError if it has no buffer,
/// ValueError naming `arg` if it is read-only or strided (writes must never be lost).
inline WritableBuffer writable_buffer(const pybind11::handle& obj, const char* arg) {
  if (!PyObject_CheckBuffer(obj.ptr())) {
    throw pybind11::type_error(
        std::string(arg) + ": expected a writable buffer or array, got " +
        std::string(pybind11::str(pybind11::type::handle_of(obj).attr("__name__"))));
  }
  auto* view = new Py_buffer();
  if (PyObject_GetBuffer(obj.ptr(), view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) !=
      0) {
    delete view;
    PyErr_Clear();
    // Ask again for any layout, only to say which requirement the buffer misses.
    Py_buffer any{};
    bool read_only = false;
    if (PyObject_GetBuffer(obj.ptr(), &any, PyBUF_FULL_RO) == 0) {
      read_only = any.readonly != 0;
      PyBuffer_Release(&any);
    }
    PyErr_Clear();
    throw pybind11::value_error(std::string(arg) +
                                (read_only ? ": the output buffer is read-only"
                                           : ": the output buffer must be C-contiguous"));
  }
  WritableBuffer out{pybind11::buffer_info(view, /*ownview=*/true), {}};
  out.span = {static_cast<std::uint8_t*>(out.info.ptr),
              static_cast<std::size_t>(out.info.size * out.info.itemsize)};
  return out;
}

}  // namespace pydata::bindings

#include <optional>
#include <vector>

#include "core/codec.hpp"
#include "core/thread_pool.hpp"

namespace pydata::bindings {

/// A bytes-like argument (anything with the buffer protocol), read with `readable_buffer`.
/// Declared so the generated stub admits numpy arrays too: numpy's own stubs declare
/// `__buffer__` (the Buffer protocol) only for Python >= 3.12.
class BytesArg : public pybind11::object {
 public:
  static bool accepts(PyObject* obj) { return PyObject_CheckBuffer(obj) != 0; }
  PYBIND11_OBJECT_DEFAULT(BytesArg, object, accepts)
};

/// An argument taken as any object and converted by `index_array`; declared so that the
/// generated stub says what it accepts (numpy.typing.ArrayLike) instead of Any.
class IndexArg : public pybind11::object {
 public:
  static bool accepts(PyObject* /*obj*/) { return true; }
  PYBIND11_OBJECT_DEFAULT(IndexArg, object, accepts)
};

/// `obj` as a 1-D C-contiguous int64 array. Accepts any integer array or sequence of ints;
/// raises TypeError for floats (which numpy would silently truncate) and ValueError if not 1-D.
inline pybind11::array_t<std::int64_t, pybind11::array::c_style> index_array(
    const pybind11::handle& obj, const char* arg) {
  auto arr = pybind11::array::ensure(obj);
  if (!arr) throw pybind11::type_error(std::string(arg) + ": expected a sequence of integers");
  const char kind = arr.dtype().kind();
  if (arr.size() != 0 && kind != 'i' && kind != 'u') {
    throw pybind11::type_error(std::string(arg) + ": expected integers, got dtype " +
                               std::string(pybind11::str(arr.dtype())));
  }
  if (arr.ndim() != 1) {
    throw pybind11::value_error(std::string(arg) + ": expected a 1-D sequence, got " +
                                std::to_string(arr.ndim()) + " dimensions");
  }
  // forcecast: an int32 or uint64 array is converted (uint64 past int64 wraps negative and is
  // then reported as out of range); the kind check above already refused floats.
  auto out = pybind11::array_t<std::int64_t, pybind11::array::c_style |
                                                 pybind11::array::forcecast>::ensure(arr);
  if (!out) throw pybind11::error_already_set();
  return out;
}

/// `obj` as a 1-D C-contiguous uint64 array (byte offsets, lengths). Accepts any integer array
/// or sequence of ints; raises TypeError for floats, ValueError if not 1-D or if a value is
/// negative (naming `arg` and the position), rather than letting it wrap to a huge size.
inline pybind11::array_t<std::uint64_t, pybind11::array::c_style> size_array(
    const pybind11::handle& obj, const char* arg) {
  auto arr = pybind11::array::ensure(obj);
  if (!arr) throw pybind11::type_error(std::string(arg) + ": expected a sequence of integers");
  const auto as_signed = index_array(arr, arg);  // the same type and shape checks
  if (arr.dtype().kind() != 'u') {
    const std::int64_t* values = as_signed.data();
    for (pybind11::ssize_t i = 0; i < as_signed.size(); ++i) {
      if (values[i] < 0) {
        throw pybind11::value_error(std::string(arg) + ": value " + std::to_string(values[i]) +
                                    " at position " + std::to_string(i) + " is negative");
      }
    }
  }
  // From the caller's array, not from as_signed: uint64 values past 2**63 stay intact.
  auto out = pybind11::array_t<std::uint64_t, pybind11::array::c_style |
                                                  pybind11::array::forcecast>::ensure(arr);
  if (!out) throw pybind11::error_already_set();
  return out;
}

/// The shape of `arr` as the core spells it.
inline std::vector<std::uint64_t> array_shape(const pybind11::array& arr) {
  std::vector<std::uint64_t> shape(static_cast<std::size_t>(arr.ndim()));
  for (std::size_t i = 0; i < shape.size(); ++i) {
    shape[i] = static_cast<std::uint64_t>(arr.shape(static_cast<pybind11::ssize_t>(i)));
  }
  return shape;
}

/// The codec dtype of `arr` (its numpy type string), relabelled as `name` when not empty
/// ("bfloat16" over uint16 bits). Raises pydata.FormatError for unsupported dtypes.
inline DType array_dtype(const pybind11::array& arr, const std::string& name = {}) {
  return resolve_dtype(pybind11::str(arr.dtype().attr("str")).cast<std::string>(), name);
}

/// The thread count a heavy call uses: `threads`, or ThreadPool::default_threads() if None.
inline std::size_t thread_count(std::optional<long> threads) {
  if (!threads) return ThreadPool::default_threads();
  if (*threads < 1) {
    throw pybind11::value_error("threads must be >= 1, got " + std::to_string(*threads));
  }
  return static_cast<std::size_t>(*threads);
}

}  // namespace pydata::bindings

template <>
struct pybind11::detail::handle_type_name<pydata::bindings::BytesArg> {
  static constexpr auto name = const_name("typing_extensions.Buffer | numpy.ndarray");
};

template <>
struct pybind11::detail::handle_type_name<pydata::bindings::IndexArg> {
  static constexpr auto name = const_name("numpy.typing.ArrayLike");
};
