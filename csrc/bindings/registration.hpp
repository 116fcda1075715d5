#pragma once
/// One registration function per concept; `module.cpp` calls them in order.

#include <pybind11/pybind11.h>

namespace pydata::bindings {

void register_errors(pybind11::module_& m);
void register_ring_buffer(pybind11::module_& m);
void register_mapped_file(pybind11::module_& m);
void register_file_reader(pybind11::module_& m);
void register_gather(pybind11::module_& m);
void register_codec(pybind11::module_& m);
void register_checksum(pybind11::module_& m);

}  // namespace pydata::bindings
