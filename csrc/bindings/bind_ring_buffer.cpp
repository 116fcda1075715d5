#include "bindings/registration.hpp"
namespace pydata::bindings {
void register_ring_buffer(pybind11::module_& /*m*/) {}
}  // namespace pydata::bindings
