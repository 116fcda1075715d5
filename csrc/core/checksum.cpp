// filled in by the checksum work
