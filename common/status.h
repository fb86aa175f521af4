// Status: the result of an operation that can fail for reasons the user can fix
// (config, data, checkpoints, command-line input). The message names the file,
// key or rank and says what to do. Programming errors and CUDA/NCCL/MPI failures
// do not use Status: they go to the fatal reporter in check.h.
#pragma once

#include <string>
#include <utility>

namespace pt {

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  static Status ok() { return Status(); }
  static Status error(std::string message) { return Status(std::move(message)); }

  bool is_ok() const { return !failed_; }
  explicit operator bool() const { return !failed_; }
  const std::string& message() const { return message_; }

  // Prefixes context ("data/x.bin: ") to a failure; no-op on success.
  Status with_context(const std::string& context) const {
    if (!failed_) return *this;
    return Status(context + ": " + message_);
  }

 private:
  explicit Status(std::string message) : failed_(true), message_(std::move(message)) {}
  bool failed_ = false;
  std::string message_;
};

// Returns early from the enclosing function when `expr` yields a failed Status.
#define PT_RETURN_IF_ERROR(expr)          \
  do {                                    \
    ::pt::Status pt_status_ = (expr);     \
    if (!pt_status_.is_ok()) return pt_status_; \
  } while (0)

}  // namespace pt
