// pydata._core.MappedFile: converts arguments, releases the GIL around file system calls, and
// returns numpy views whose base is the MappedFile, so a view keeps the mapping alive.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>
#include <pybind11/typing.h>

#include <filesystem>

#include <optional>

#include "bindings/buffers.hpp"
#include "bindings/registration.hpp"
#include "core/errors.hpp"
#include "core/mapped_file.hpp"

namespace py = pybind11;

namespace pydata::bindings {
namespace {

using FilePtr = std::shared_ptr<MappedFile>;

// None means "to the end of the file"; an offset past the end is left for the core to report.
std::size_t length_or_rest(const MappedFile& file, std::size_t offset,
                           std::optional<std::size_t> length) {
  if (length) return *length;
  return offset <= file.size() ? file.size() - offset : 0;
}

// A read-only query over [offset, offset + length), run without the GIL.
template <std::size_t (MappedFile::*kQuery)(std::size_t, std::size_t) const>
std::size_t range_query(const MappedFile& self, std::size_t offset,
                        std::optional<std::size_t> length) {
  const std::size_t bytes = length_or_rest(self, offset, length);
  py::gil_scoped_release nogil;
  return (self.*kQuery)(offset, bytes);
}

py::array view(const FilePtr& file, std::size_t offset, std::optional<std::size_t> length,
               const py::object& dtype_arg, const py::object& shape_arg, bool writable) {
  if (writable && !file->copy_on_write()) {
    throw FormatError("view of '" + file->path() +
                      "': the kernel refused a copy-on-write mapping, so views are read-only");
  }
  const py::dtype dtype = py::dtype::from_args(dtype_arg);
  const auto itemsize = static_cast<std::size_t>(dtype.itemsize());
  std::vector<py::ssize_t> shape;
  if (!shape_arg.is_none()) {
    std::size_t items = 1;
    for (const py::handle dim : shape_arg) {
      const auto d = dim.cast<py::ssize_t>();
      if (d < 0) throw FormatError("view of '" + file->path() + "': negative dimension in shape");
      shape.push_back(d);
      items *= static_cast<std::size_t>(d);
    }
    const std::size_t shaped = items * itemsize;
    if (length && *length != shaped) {
      throw FormatError("view of '" + file->path() + "': shape needs " + std::to_string(shaped) +
                        " bytes of " + std::string(py::str(dtype)) + ", but length is " +
                        std::to_string(*length));
    }
    length = shaped;
  }
  const std::size_t bytes = length_or_rest(*file, offset, length);
  const ByteSpan span = file->bytes(offset, bytes);  // bounds check, names file and range
  if (shape.empty() && shape_arg.is_none()) {
    if (bytes % itemsize != 0) {
      throw FormatError("view of '" + file->path() + "': " + std::to_string(bytes) +
                        " bytes is not a whole number of " + std::string(py::str(dtype)) +
                        " items");
    }
    shape.push_back(static_cast<py::ssize_t>(bytes / itemsize));
  }
  py::array out(dtype, shape, {}, span.data, py::cast(file));
  if (!writable) out.attr("setflags")(py::arg("write") = false);
  return out;
}

}  // namespace

void register_mapped_file(py::module_& m) {
  py::class_<MappedFile, FilePtr>(m, "MappedFile", R"doc(
A memory mapping of a whole file; the file itself is never written.

Views returned by :meth:`view` are zero-copy numpy arrays whose ``base`` is this object, so the
mapping stays alive while any view does. The mapping is private and copy-on-write where the
kernel allows it (``copy_on_write``): a writable view's changes stay in this process. Pickles by
path: a worker process re-opens the file.

Raises:
    FileNotFoundError / PermissionError / IsADirectoryError: the file cannot be opened.
    pydata.CorruptDataError: the file is empty or shorter than ``min_size`` bytes.
)doc")
      .def(py::init([](const std::filesystem::path& path, std::size_t min_size) {
             py::gil_scoped_release nogil;
             return MappedFile::open(path.string(), min_size);
           }),
           py::arg("path"), py::kw_only(), py::arg("min_size") = 0)
      .def_property_readonly("path", &MappedFile::path, "The path the file was opened with.")
      .def_property_readonly("size", &MappedFile::size, "File size in bytes.")
      .def_property_readonly("copy_on_write", &MappedFile::copy_on_write,
                             "Whether writable views are possible (changes stay private).")
      .def("__len__", &MappedFile::size)
      .def("view", &view, py::arg("offset") = 0, py::arg("length") = py::none(), py::kw_only(),
           py::arg("dtype") = "uint8", py::arg("shape") = py::none(), py::arg("writable") = false,
           R"doc(
A zero-copy numpy view of bytes [offset, offset + length), read-only unless ``writable``.

Args:
    offset: First byte.
    length: Bytes to view; by default ``prod(shape) * itemsize`` or the rest of the file.
    dtype: numpy dtype of the view (``"<f2"`` etc. for explicit byte order).
    shape: Shape of the view; by default one dimension.
    writable: Allow writes through the view: they copy the touched pages privately for this
        process and never reach the file (needs ``copy_on_write``).

Raises:
    IndexError: the range lies past the end of the file (names the file and range).
    pydata.FormatError: length and shape disagree, length is not whole items, or ``writable``
        without a copy-on-write mapping.
)doc")
      .def(
          "advise",
          [](const MappedFile& self, const std::string& advice, std::size_t offset,
             std::optional<std::size_t> length) {
            const auto parsed = MappedFile::parse_advice(advice);
            const std::size_t bytes = length_or_rest(self, offset, length);
            py::gil_scoped_release nogil;
            self.advise(parsed, offset, bytes);
          },
          py::arg("advice"), py::arg("offset") = 0, py::arg("length") = py::none(),
          "madvise() a range: 'normal', 'sequential', 'random', 'willneed' or 'dontneed'.")
      .def(
          "resident_bytes",
          &range_query<&MappedFile::resident_bytes>,
          py::arg("offset") = 0, py::arg("length") = py::none(),
          "Bytes of the range resident in the page cache now (mincore), for diagnostics.")
      .def(
          "prefault",
          &range_query<&MappedFile::prefault>,
          py::arg("offset") = 0, py::arg("length") = py::none(),
          "Touches every page of the range so it is resident; returns the pages touched.")
      .def("__reduce__",
           [](const py::object& self) {
             using Reduced = py::typing::Tuple<py::type, py::typing::Tuple<py::str>>;
             return Reduced(py::make_tuple(py::type::of(self), py::make_tuple(self.attr("path"))));
           })
      .def("__repr__", [](const MappedFile& self) {
        return "MappedFile('" + self.path() + "', size=" + std::to_string(self.size()) + ")";
      });
}

}  // namespace pydata::bindings
