#include "bindings/registration.hpp"
namespace pydata::bindings {
void register_checksum(pybind11::module_& /*m*/) {}
}  // namespace pydata::bindings
