#include "bindings/registration.hpp"
namespace pydata::bindings {
void register_gather(pybind11::module_& /*m*/) {}
}  // namespace pydata::bindings
