// pydata._core gather: FixedSections / IndexedSections (gather, and decode of blob rows) and
// the one-shot gather_rows / gather_ranges. Each section object keeps its Python sources
// (mmap views, arrays) alive.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>
#include <pybind11/typing.h>

#include <optional>

#include "bindings/buffers.hpp"
#include "bindings/registration.hpp"
#include "core/errors.hpp"
#include "core/gather.hpp"

namespace py = pybind11;

namespace pydata::bindings {
namespace {

using Names = std::optional<std::vector<std::string>>;
using Sources = py::typing::Iterable<BytesArg>;
using Sections = py::typing::Iterable<py::typing::Tuple<py::array, BytesArg>>;
using RangesResult = py::typing::Tuple<py::array, py::array>;
using RaggedResult = py::typing::Tuple<py::array, py::array>;

// The core objects hold raw pointers; these wrappers own the buffers those pointers come from.
struct PyFixedSections {
  std::vector<ReadableBuffer> buffers;
  FixedSections core;
};

struct PyIndexedSections {
  std::vector<py::array_t<std::uint64_t, py::array::c_style>> offsets;
  std::vector<ReadableBuffer> payloads;
  IndexedSections core;
};

std::unique_ptr<PyFixedSections> make_fixed(const Sources& sources, std::size_t row_bytes,
                                            Names names) {
  std::vector<ReadableBuffer> buffers;
  std::vector<ByteSpan> spans;
  for (const py::handle source : sources) {
    buffers.push_back(readable_buffer(source, "sources"));
    spans.push_back(buffers.back().span);
  }
  FixedSections core(std::move(spans), row_bytes, names.value_or(std::vector<std::string>{}));
  return std::unique_ptr<PyFixedSections>(new PyFixedSections{std::move(buffers), std::move(core)});
}

std::unique_ptr<PyIndexedSections> make_indexed(const Sections& sections, Names names) {
  std::vector<py::array_t<std::uint64_t, py::array::c_style>> offsets;
  std::vector<ReadableBuffer> payloads;
  std::vector<IndexedSection> spans;
  for (const py::handle item : sections) {
    const auto pair = item.cast<py::tuple>();
    if (pair.size() != 2) throw py::value_error("sections: expected (offsets, payload) pairs");
    auto table = py::array_t<std::uint64_t, py::array::c_style | py::array::forcecast>::ensure(pair[0]);
    if (!table || table.ndim() != 1 || table.size() < 1) {
      throw py::value_error("sections: offsets must be a 1-D uint64 array of rows + 1 entries");
    }
    payloads.push_back(readable_buffer(pair[1], "sections payload"));
    spans.push_back({table.data(), static_cast<std::size_t>(table.size() - 1), payloads.back().span});
    offsets.push_back(std::move(table));
  }
  IndexedSections core(std::move(spans), names.value_or(std::vector<std::string>{}));
  return std::unique_ptr<PyIndexedSections>(
      new PyIndexedSections{std::move(offsets), std::move(payloads), std::move(core)});
}

py::array gather_fixed(const PyFixedSections& self, const IndexArg& indices, py::array out,
                       std::optional<long> threads) {
  const auto idx = index_array(indices, "indices");
  const MutableByteSpan dst = writable_bytes(out, "out");
  const std::size_t n = thread_count(threads);
  {
    py::gil_scoped_release nogil;
    self.core.gather(idx.data(), static_cast<std::size_t>(idx.size()), dst, n);
  }
  return out;
}

RangesResult gather_indexed(const PyIndexedSections& self, const IndexArg& indices,
                         std::optional<py::array> out, std::optional<long> threads) {
  const auto idx = index_array(indices, "indices");
  const auto count = static_cast<std::size_t>(idx.size());
  py::array_t<std::uint64_t> offsets(static_cast<py::ssize_t>(count + 1));
  std::uint64_t* offsets_ptr = offsets.mutable_data();
  std::uint64_t total = 0;
  {
    py::gil_scoped_release nogil;
    total = self.core.plan(idx.data(), count, offsets_ptr);
  }
  py::array payload = out ? *out : py::array_t<std::uint8_t>(static_cast<py::ssize_t>(total));
  const MutableByteSpan dst = writable_bytes(payload, "out");
  const std::size_t n = thread_count(threads);
  {
    py::gil_scoped_release nogil;
    self.core.copy(idx.data(), count, offsets_ptr, dst, n);
  }
  return RangesResult(py::make_tuple(offsets, payload));
}

py::array decode_indexed(const PyIndexedSections& self, const IndexArg& indices, py::array out,
                         std::optional<long> threads) {
  const auto idx = index_array(indices, "indices");
  const MutableByteSpan dst = writable_bytes(out, "out");
  const DType dtype = array_dtype(out);
  const std::vector<std::uint64_t> shape = array_shape(out);
  const std::size_t n = thread_count(threads);
  {
    py::gil_scoped_release nogil;
    self.core.decode(idx.data(), static_cast<std::size_t>(idx.size()), dtype, shape, dst, n);
  }
  return out;
}

RaggedResult decode_ragged_indexed(const PyIndexedSections& self, const IndexArg& indices,
                                  const py::dtype& dtype, std::optional<std::size_t> ndim,
                                  std::optional<long> threads) {
  const auto idx = index_array(indices, "indices");
  const auto count = static_cast<std::size_t>(idx.size());
  const DType code = resolve_dtype(py::str(dtype.attr("str")).cast<std::string>());
  const std::size_t n = thread_count(threads);
  RaggedPlan plan;
  {
    py::gil_scoped_release nogil;
    plan = self.core.plan_ragged(idx.data(), count, code, ndim);
  }
  const std::uint64_t total = plan.byte_offsets.back();
  const std::size_t width = plan.ndim;
  const auto itemsize = static_cast<std::uint64_t>(dtype.itemsize());
  py::array values(dtype, std::vector<py::ssize_t>{static_cast<py::ssize_t>(total / itemsize)});
  py::array_t<std::int64_t> shapes(
      std::vector<py::ssize_t>{static_cast<py::ssize_t>(count), static_cast<py::ssize_t>(width)});
  std::int64_t* shape_ptr = shapes.mutable_data();
  for (std::size_t i = 0; i < count; ++i) {
    for (std::size_t d = 0; d < width; ++d) {
      shape_ptr[i * width + d] = static_cast<std::int64_t>(plan.infos[i].shape[d]);
    }
  }
  const MutableByteSpan dst = writable_bytes(values, "values");
  {
    py::gil_scoped_release nogil;
    const BlobLabel label = [&](std::size_t i) { return self.core.row_label(idx.data()[i]); };
    decode_ragged(plan, dst, n, &label);
  }
  return RaggedResult(py::make_tuple(values, shapes));
}

}  // namespace

void register_gather(py::module_& m) {
  py::class_<PyFixedSections>(m, "FixedSections", R"doc(
Fixed-size rows in several sections (e.g. one field's section in every shard), addressed by a
global row index: section 0's rows first. Keeps its sources alive.

Args:
    sources: C-contiguous buffers (numpy arrays, MappedFile views), each whole rows long.
    row_bytes: Bytes per row.
    names: Optional name per section (shard file names) for error messages.
)doc")
      .def(py::init(&make_fixed), py::arg("sources"), py::arg("row_bytes"), py::kw_only(),
           py::arg("names") = py::none())
      .def_property_readonly("rows", [](const PyFixedSections& s) { return s.core.rows(); })
      .def_property_readonly("row_bytes", [](const PyFixedSections& s) { return s.core.row_bytes(); })
      .def_property_readonly("num_sections", [](const PyFixedSections& s) { return s.core.sections(); })
      .def("gather", &gather_fixed, py::arg("indices"), py::arg("out").noconvert(), py::kw_only(),
           py::arg("threads") = py::none(), R"doc(
Copies row ``indices[i]`` into ``out[i]`` for every i, with the GIL released. ``out`` is any
C-contiguous writable array of ``len(indices) * row_bytes`` bytes (a torch tensor via ``.numpy()``).
Every index is checked before any byte moves. Returns ``out``.

Raises:
    IndexError: an index is out of range (names it and its position).
    pydata.FormatError: ``out`` has the wrong number of bytes.
)doc");

  py::class_<PyIndexedSections>(m, "IndexedSections", R"doc(
Variable-size rows in several sections, each an ``(offsets, payload)`` pair where ``offsets`` is
a uint64 array of rows + 1 entries and row r is ``payload[offsets[r]:offsets[r + 1]]``.
)doc")
      .def(py::init(&make_indexed), py::arg("sections"), py::kw_only(), py::arg("names") = py::none())
      .def_property_readonly("rows", [](const PyIndexedSections& s) { return s.core.rows(); })
      .def_property_readonly("num_sections", [](const PyIndexedSections& s) { return s.core.sections(); })
      .def("gather", &gather_indexed, py::arg("indices"), py::arg("out") = py::none(), py::kw_only(),
           py::arg("threads") = py::none(), R"doc(
Concatenates the rows named by ``indices``. Returns ``(offsets, payload)``: uint64 offsets of
``len(indices) + 1`` entries starting at 0, and the payload (``out`` if given, else a new uint8
array of exactly the needed size).

Raises:
    IndexError: an index is out of range.
    pydata.CorruptDataError: a row's offsets decrease or point past its payload.
    pydata.FormatError: ``out`` is too small.
)doc")
      .def("decode", &decode_indexed, py::arg("indices"), py::arg("out").noconvert(), py::kw_only(),
           py::arg("threads") = py::none(), R"doc(
Decodes row ``indices[i]``, a codec blob (see :func:`encode`), straight from its payload into
``out[i]`` for every i, on the shared thread pool with the GIL released; no blob is copied
first. ``out`` is a C-contiguous writable array of shape ``(len(indices), *sample_shape)`` and
the blobs' stored dtype (uint16 or int16 for bfloat16), e.g. a torch tensor via ``.numpy()``.
Indices, offsets and every blob header are checked before any row is written. Returns ``out``.

Raises:
    IndexError: an index is out of range (names it and its position).
    pydata.CorruptDataError: a row's offsets decrease or point past its payload, or its blob
        is damaged (names the section, its name and the row, and the codec problem).
    pydata.FormatError: ``out`` does not have one row per index, or a blob's dtype or shape
        differs from a row of ``out``.
)doc")
      .def("decode_ragged", &decode_ragged_indexed, py::arg("indices"), py::arg("dtype"),
           py::arg("ndim") = py::none(), py::kw_only(), py::arg("threads") = py::none(), R"doc(
Decodes rows ``indices``, codec blobs of ``dtype`` whose shapes vary (e.g. token sequences),
straight from their payloads and back to back into one new 1-D array, with the GIL released.
Returns ``(values, shapes)``: the rows' elements in order, and an int64 array
``(len(indices), ndim)`` of their shapes. Every row must have ``ndim`` dimensions (None: as many
as the first row). Every header is checked before any row is decoded. ``dtype`` is the stored
dtype (uint16 for bfloat16).

Raises:
    IndexError: an index is out of range (names it and its position).
    pydata.CorruptDataError: a row's offsets or blob are damaged (names the section and row).
    pydata.FormatError: a blob's dtype or ndim differs from ``dtype``/``ndim`` (names the row).
    ValueError: ``out`` is read-only or not C-contiguous.
)doc");

  m.def(
      "gather_rows",
      [](const Sources& sources, const IndexArg& indices, py::array out,
         std::optional<long> threads) {
        if (out.ndim() < 1) throw FormatError("out must have one row per index, got a 0-d array");
        std::size_t row_bytes = static_cast<std::size_t>(out.itemsize());
        for (py::ssize_t d = 1; d < out.ndim(); ++d) row_bytes *= static_cast<std::size_t>(out.shape(d));
        if (static_cast<std::size_t>(out.shape(0)) != static_cast<std::size_t>(py::len(indices))) {
          throw FormatError("out has " + std::to_string(out.shape(0)) + " rows for " +
                            std::to_string(py::len(indices)) + " indices");
        }
        const auto sections = make_fixed(sources, row_bytes, std::nullopt);
        return gather_fixed(*sections, indices, out, threads);
      },
      py::arg("sources"), py::arg("indices"), py::arg("out").noconvert(), py::kw_only(),
      py::arg("threads") = py::none(), R"doc(
One-shot :meth:`FixedSections.gather`; the row size is ``out.nbytes // out.shape[0]`` and
``out.shape[0]`` must equal ``len(indices)``. Returns ``out``.
)doc");

  m.def(
      "gather_ranges",
      [](const Sections& sections, const IndexArg& indices, std::optional<py::array> out,
         std::optional<long> threads) {
        return gather_indexed(*make_indexed(sections, std::nullopt), indices, std::move(out), threads);
      },
      py::arg("sections"), py::arg("indices"), py::arg("out") = py::none(), py::kw_only(),
      py::arg("threads") = py::none(), "One-shot :meth:`IndexedSections.gather`.");
}

}  // namespace pydata::bindings
