// pydata._core.FileReader: converts the range arrays and the output buffer, and releases the GIL
// around open, read and close (each may wait on the file system or on reads in flight).
#include <pybind11/numpy.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>
#include <pybind11/typing.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bindings/buffers.hpp"
#include "bindings/registration.hpp"
#include "core/errors.hpp"
#include "core/file_reader.hpp"

namespace py = pybind11;

namespace pydata::bindings {

// __exit__'s arguments, declared so that the generated stub types them instead of Any.
class ExcTypeArg : public py::object {
 public:
  static bool accepts(PyObject* obj) { return obj == Py_None || PyType_Check(obj) != 0; }
  PYBIND11_OBJECT_DEFAULT(ExcTypeArg, object, accepts)
};
class ExcValueArg : public py::object {
 public:
  static bool accepts(PyObject* obj) {
    return obj == Py_None || PyExceptionInstance_Check(obj) != 0;
  }
  PYBIND11_OBJECT_DEFAULT(ExcValueArg, object, accepts)
};
class TracebackArg : public py::object {
 public:
  static bool accepts(PyObject* obj) { return obj == Py_None || PyTraceBack_Check(obj) != 0; }
  PYBIND11_OBJECT_DEFAULT(TracebackArg, object, accepts)
};

}  // namespace pydata::bindings

template <>
struct pybind11::detail::handle_type_name<pydata::bindings::ExcTypeArg> {
  static constexpr auto name = const_name("type[BaseException] | None");
};

template <>
struct pybind11::detail::handle_type_name<pydata::bindings::ExcValueArg> {
  static constexpr auto name = const_name("BaseException | None");
};

template <>
struct pybind11::detail::handle_type_name<pydata::bindings::TracebackArg> {
  static constexpr auto name = const_name("types.TracebackType | None");
};

namespace pydata::bindings {
namespace {

std::unique_ptr<FileReader> open_files(const std::vector<std::filesystem::path>& paths) {
  std::vector<std::string> names;
  names.reserve(paths.size());
  for (const auto& path : paths) names.push_back(path.string());
  py::gil_scoped_release nogil;
  return std::make_unique<FileReader>(std::move(names));
}

std::uint64_t read(const FileReader& self, const IndexArg& file_ids, const IndexArg& offsets,
                   const IndexArg& lengths, const BytesArg& out, std::optional<long> threads) {
  const auto ids = index_array(file_ids, "file_ids");
  const auto starts = size_array(offsets, "offsets");
  const auto sizes = size_array(lengths, "lengths");
  if (starts.size() != ids.size() || sizes.size() != ids.size()) {
    throw FormatError("read: file_ids, offsets and lengths must be equally long, got " +
                      std::to_string(ids.size()) + ", " + std::to_string(starts.size()) +
                      " and " + std::to_string(sizes.size()) + " entries");
  }
  const WritableBuffer dst = writable_buffer(out, "out");
  const std::size_t n = thread_count(threads);
  std::uint64_t total = 0;
  {
    py::gil_scoped_release nogil;
    total = self.read(ids.data(), starts.data(), sizes.data(), static_cast<std::size_t>(ids.size()),
                      dst.span, n);
  }
  return total;
}

}  // namespace

void register_file_reader(py::module_& m) {
  py::class_<FileReader>(m, "FileReader", R"doc(
Reads byte ranges of several files with plain ``pread`` into one buffer, on the shared thread
pool with the GIL released. For file systems where reading through a memory mapping is slow
(NFS, FUSE): each range costs one or a few large reads instead of one page fault per page.

Opens every file read-only at construction and records its size. Pickles by paths: a worker
process re-opens the files. Use as a context manager, or call :meth:`close`.

Args:
    paths: The files, in file-id order.

Raises:
    FileNotFoundError / PermissionError / IsADirectoryError: a file cannot be opened
        (``filename`` is its path).
)doc")
      .def(py::init(&open_files), py::arg("paths"))
      .def_property_readonly("paths", &FileReader::paths, "The paths, in file-id order.")
      .def_property_readonly("sizes", &FileReader::sizes, "Each file's size in bytes at open.")
      .def_property_readonly("closed", &FileReader::closed, "Whether close() has been called.")
      .def("__len__", &FileReader::files, "Number of files.")
      .def("read", &read, py::arg("file_ids"), py::arg("offsets"), py::arg("lengths"),
           py::arg("out").noconvert(), py::kw_only(), py::arg("threads") = py::none(), R"doc(
Copies range k, bytes ``[offsets[k], offsets[k] + lengths[k])`` of file ``file_ids[k]``, into
``out`` right after range k - 1, so the ranges land back to back from byte 0. Every argument
is checked before the first read. Returns the total bytes read, ``sum(lengths)``.

Args:
    file_ids: Integer file ids (indices into ``paths``), one per range.
    offsets: Non-negative byte offsets, as many as ``file_ids``.
    lengths: Non-negative byte counts, as many as ``file_ids``.
    out: A writable C-contiguous buffer (numpy array, bytearray, a tensor via ``.numpy()``)
        of at least ``sum(lengths)`` bytes.
    threads: Most threads to use; None means the pool's default. Batches under 1 MiB are
        read on the calling thread.

Raises:
    IndexError: a file id is out of range (names it and its position).
    pydata.CorruptDataError: a range lies past its file's end at open, or the file ended
        early while being read (truncated since open); names the path.
    pydata.FormatError: the arrays differ in length, or ``out`` is too small.
    pydata.ClosedError: the reader is closed.
    OSError: a read failed (``filename`` is the path).
    TypeError / ValueError: an argument is not integers, is negative, or ``out`` is read-only
        or not C-contiguous.
)doc")
      .def("close", &FileReader::close, py::call_guard<py::gil_scoped_release>(),
           "Closes the files, after any read in flight has finished. Idempotent.")
      .def(
          "__enter__", [](FileReader& self) -> FileReader& { return self; },
          py::return_value_policy::reference)
      .def(
          "__exit__",
          [](FileReader& self, const ExcTypeArg&, const ExcValueArg&, const TracebackArg&) {
            py::gil_scoped_release nogil;
            self.close();
          },
          py::arg("exc_type"), py::arg("exc"), py::arg("traceback"), "Closes the files.")
      .def("__reduce__",
           [](const py::object& self) {
             using Reduced =
                 py::typing::Tuple<py::type, py::typing::Tuple<py::typing::List<py::str>>>;
             return Reduced(py::make_tuple(py::type::of(self), py::make_tuple(self.attr("paths"))));
           })
      .def("__repr__", [](const FileReader& self) {
        std::uint64_t bytes = 0;
        for (const std::uint64_t size : self.sizes()) bytes += size;
        return "FileReader(" + std::to_string(self.files()) + " files, " + std::to_string(bytes) +
               " bytes" + (self.closed() ? ", closed)" : ")");
      });
}

}  // namespace pydata::bindings

