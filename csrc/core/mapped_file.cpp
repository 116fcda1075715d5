// filled in by the mapped_file work
