#include "bindings/registration.hpp"
namespace pydata::bindings {
void register_codec(pybind11::module_& /*m*/) {}
}  // namespace pydata::bindings
