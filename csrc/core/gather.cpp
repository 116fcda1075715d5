// filled in by the gather work
