#pragma once
/// The error types of the core. Each derives from a standard exception, so that code which
/// does not know pydata still catches it sensibly; `bindings/bind_errors.cpp` maps each one to
/// its class in `pydata/errors.py`. Messages name the file, field, sample or offset at fault
/// and what was expected.

#include <cerrno>
#include <stdexcept>
#include <string>
#include <system_error>

namespace pydata {

/// Data does not match the layout or schema the caller asked for (wrong dtype, shape or size).
class FormatError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// Stored bytes are damaged: bad magic, checksum mismatch, truncated blob, offsets past the end.
class CorruptDataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// An operation on a closed object (a push onto a closed RingBuffer, a pop once it is drained).
class ClosedError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A blocking call reached its deadline before it could complete.
class WaitTimeout : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// An operating-system call failed on a file; keeps errno and the path for Python's OSError.
class OsError : public std::system_error {
 public:
  /// @param err errno of the failed call; @param call what failed ("open", "mmap");
  /// @param path the file it failed on.
  OsError(int err, std::string call, std::string path)
      : std::system_error(err, std::generic_category(), call + " '" + path + "'"),
        call_(std::move(call)),
        path_(std::move(path)) {}

  /// The call that failed, e.g. "open".
  [[nodiscard]] const std::string& call() const noexcept { return call_; }
  /// The file the failed call was about.
  [[nodiscard]] const std::string& path() const noexcept { return path_; }

 private:
  std::string call_;
  std::string path_;
};

}  // namespace pydata
