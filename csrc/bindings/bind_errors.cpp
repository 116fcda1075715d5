// The single place that maps core errors (core/errors.hpp) to Python classes (pydata/errors.py).
#include <Python.h>
#include <pybind11/gil_safe_call_once.h>

#include <system_error>

#include "bindings/registration.hpp"
#include "core/errors.hpp"

namespace py = pybind11;

namespace pydata::bindings {
namespace {

struct ErrorClasses {
  py::object format_error;
  py::object corrupt_data_error;
  py::object closed_error;
  py::object wait_timeout_error;
};

const ErrorClasses& error_classes() {
  PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<ErrorClasses> storage;
  return storage
      .call_once_and_store_result([] {
        py::module_ errors = py::module_::import("pydata.errors");
        return ErrorClasses{errors.attr("FormatError"), errors.attr("CorruptDataError"),
                            errors.attr("ClosedError"), errors.attr("WaitTimeoutError")};
      })
      .get_stored();
}

// OSError(errno, strerror, filename) picks the subclass (FileNotFoundError, ...) by itself.
void set_os_error(int err, const std::string& message, const std::string* path) {
  py::tuple args =
      path != nullptr ? py::tuple(py::make_tuple(err, message, *path)) : py::tuple(py::make_tuple(err, message));
  PyErr_SetObject(PyExc_OSError, args.ptr());
}

void translate(std::exception_ptr error) {
  const ErrorClasses& classes = error_classes();
  try {
    std::rethrow_exception(error);
  } catch (const FormatError& e) {
    PyErr_SetString(classes.format_error.ptr(), e.what());
  } catch (const CorruptDataError& e) {
    PyErr_SetString(classes.corrupt_data_error.ptr(), e.what());
  } catch (const ClosedError& e) {
    PyErr_SetString(classes.closed_error.ptr(), e.what());
  } catch (const WaitTimeout& e) {
    PyErr_SetString(classes.wait_timeout_error.ptr(), e.what());
  } catch (const OsError& e) {
    set_os_error(e.code().value(), e.call() + " failed: " + e.code().message(), &e.path());
  } catch (const std::system_error& e) {
    if (e.code().category() != std::generic_category() &&
        e.code().category() != std::system_category()) {
      throw;  // not an errno: pybind11's default translation (RuntimeError)
    }
    set_os_error(e.code().value(), e.what(), nullptr);
  }
  // Anything else propagates to pybind11's defaults: out_of_range -> IndexError,
  // invalid_argument -> ValueError, bad_alloc -> MemoryError.
}

}  // namespace

void register_errors(py::module_& /*m*/) {
  (void)error_classes();  // import pydata.errors now, so a broken install fails at import time
  py::register_local_exception_translator(translate);
}

}  // namespace pydata::bindings
