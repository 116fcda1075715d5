// Python bindings of core/codec.hpp: convert, release the GIL, call, convert back.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11/typing.h>

#include <optional>
#include <string>
#include <vector>

#include "bindings/buffers.hpp"
#include "bindings/registration.hpp"
#include "core/codec.hpp"

namespace py = pybind11;
using namespace pybind11::literals;  // NOLINT: the "key"_a argument syntax

namespace pydata::bindings {
namespace {

TensorRef tensor_of(const py::array& a, const std::optional<std::string>& dtype) {
  return {array_dtype(a, dtype.value_or("")), array_shape(a), contiguous_bytes(a, "array")};
}

py::bytes encode(const py::array& array, const std::string& codec,
                 const std::optional<std::string>& dtype) {
  const Codec c = codec_from_name(codec);
  const TensorRef tensor = tensor_of(array, dtype);
  std::vector<std::uint8_t> blob;
  {
    py::gil_scoped_release nogil;
    blob.resize(encode_bound(c, tensor));
    blob.resize(encode_into(c, tensor, {blob.data(), blob.size()}));
  }
  return {reinterpret_cast<const char*>(blob.data()), blob.size()};
}

py::array decode(const BytesArg& blob, std::optional<py::array> out) {
  const ReadableBuffer src = readable_buffer(blob, "blob");
  const BlobInfo info = read_blob_info(src.span);  // the header only: cheap, GIL held
  py::array result;
  if (out) {
    result = *out;
    check_destination(info, array_dtype(result), array_shape(result), "out");
  } else {
    result = py::array(py::dtype(dtype_typestr(info.dtype)),
                       std::vector<py::ssize_t>(info.shape.begin(), info.shape.end()));
  }
  const MutableByteSpan dst = writable_bytes(result, "out");
  {
    py::gil_scoped_release nogil;
    decode_into(src.span, info, dst);
  }
  return result;
}

void decode_batch_py(const py::typing::Iterable<BytesArg>& blobs, py::array out,
                     std::optional<long> threads) {
  const std::size_t thread_limit = thread_count(threads);
  const MutableByteSpan dst = writable_bytes(out, "out");
  const DType dtype = array_dtype(out);
  const std::vector<std::uint64_t> shape = array_shape(out);
  std::vector<ReadableBuffer> buffers;
  std::vector<ByteSpan> spans;
  for (py::handle blob : blobs) {
    const std::string arg = "blobs[" + std::to_string(buffers.size()) + "]";
    buffers.push_back(readable_buffer(blob, arg.c_str()));
    spans.push_back(buffers.back().span);
  }
  {
    py::gil_scoped_release nogil;
    decode_batch(spans, dtype, shape, dst, thread_limit);
  }
}

py::typing::Dict<py::str, py::object> blob_info(const BytesArg& blob) {
  const ReadableBuffer src = readable_buffer(blob, "blob");
  const BlobInfo info = read_blob_info(src.span);
  return py::dict("codec"_a = codec_name(info.codec), "dtype"_a = dtype_name(info.dtype),
                  "shape"_a = py::tuple(py::cast(info.shape)), "raw_nbytes"_a = info.raw_nbytes,
                  "blob_nbytes"_a = info.blob_nbytes, "version"_a = info.version);
}

py::typing::Dict<py::str, py::object> quantization_error_py(
    const py::array& array, const std::string& codec, const std::optional<std::string>& dtype) {
  const Codec c = codec_from_name(codec);
  const TensorRef tensor = tensor_of(array, dtype);
  QuantizationReport report;
  {
    py::gil_scoped_release nogil;
    report = quantization_error(c, tensor);
  }
  return py::dict("max_abs"_a = report.max_abs, "rel_l2"_a = report.rel_l2,
                  "blob_nbytes"_a = report.blob_nbytes);
}

}  // namespace

void register_codec(py::module_& m) {
  m.attr("CODECS") = py::tuple(py::cast(codec_names()));
  m.def("encode", &encode, py::arg("array"), py::arg("codec"), py::kw_only(),
        py::arg("dtype") = py::none(),
        "Encodes a C-contiguous array into a self-describing blob (layout: docs/format.md).\n\n"
        "Args:\n    array: Lossless codecs take any bool/int/float/complex dtype; quantised ones\n"
        "        float32, float16 or bfloat16.\n    codec: One of CODECS.\n"
        "    dtype: 'bfloat16' marks a uint16 array as bfloat16 bits (numpy has no bfloat16).\n\n"
        "Returns:\n    The blob.\n\nRaises:\n    FormatError: Unknown codec, unsupported dtype, or "
        "non-finite input to int8/fp8.\n    ValueError: The array is not C-contiguous.");
  m.def("decode", &decode, py::arg("blob"), py::arg("out").noconvert() = py::none(),
        "Decodes a blob (any bytes-like object) into a new array or into `out`.\n\n"
        "A bfloat16 blob decodes to uint16 bfloat16 bits (`out` may be uint16 or int16).\n\n"
        "Args:\n    blob: The encoded bytes.\n    out: A C-contiguous writable array of the "
        "stored shape and dtype.\n\nReturns:\n    `out`, or a new array.\n\nRaises:\n"
        "    CorruptDataError: The blob is damaged or truncated.\n    FormatError: `out` has "
        "the wrong shape or dtype.\n    ValueError: `out` is read-only or not contiguous.");
  m.def("decode_batch", &decode_batch_py, py::arg("blobs"), py::arg("out").noconvert(),
        py::kw_only(), py::arg("threads") = py::none(),
        "Decodes blobs[i] into out[i] on the shared thread pool, with the GIL released.\n\n"
        "Every header is checked before any row is written.\n\nArgs:\n    blobs: An iterable of "
        "bytes-like blobs.\n    out: A C-contiguous writable array of shape\n"
        "        (len(blobs), *sample_shape) and the stored dtype (a tensor via t.numpy()).\n"
        "    threads: Most threads to use; None means the pool's default.\n\nRaises:\n"
        "    CorruptDataError: A blob is damaged; the message names its index.\n"
        "    FormatError: A blob's shape or dtype does not fit `out`.");
  m.def("blob_info", &blob_info, py::arg("blob"),
        "The validated header of a blob: a dict with codec, dtype, shape, raw_nbytes,\n"
        "blob_nbytes and version.\n\nRaises:\n    CorruptDataError: The header is damaged.");
  m.def("quantization_error", &quantization_error_py, py::arg("array"), py::arg("codec"),
        py::kw_only(), py::arg("dtype") = py::none(),
        "Encodes and decodes `array` and reports the round trip's error.\n\nReturns:\n"
        "    A dict with max_abs (max |x - x^|), rel_l2 (||x - x^|| / ||x||, 0 when ||x|| == 0)\n"
        "    and blob_nbytes. Both errors are 0 for the lossless codecs.\n\nRaises:\n"
        "    FormatError: As for encode.");
}

}  // namespace pydata::bindings
