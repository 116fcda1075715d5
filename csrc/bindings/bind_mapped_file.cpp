#include "bindings/registration.hpp"
namespace pydata::bindings {
void register_mapped_file(pybind11::module_& /*m*/) {}
}  // namespace pydata::bindings
