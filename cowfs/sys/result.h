// Result<T>: a value or an errno. The only error currency of cowfs/core.
//
// Errors are captured the moment a syscall returns (see syscalls.h) and
// travel up unchanged, so the FUSE layer can reply with exactly the errno
// the kernel expects. No exceptions cross this boundary.
#pragma once

#include <cerrno>
#include <utility>
#include <variant>

namespace cowfs {

struct Errno {
  int value;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Errno e) : v_(e) {}                 // NOLINT(google-explicit-constructor)

  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }
  int error() const { return ok() ? 0 : std::get<Errno>(v_).value; }
  T& operator*() { return std::get<T>(v_); }
  const T& operator*() const { return std::get<T>(v_); }
  T* operator->() { return &std::get<T>(v_); }
  const T* operator->() const { return &std::get<T>(v_); }
  T take() { return std::move(std::get<T>(v_)); }

 private:
  std::variant<T, Errno> v_;
};

// Status: success or an errno, for operations that return nothing.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Errno e) : err_(e.value) {}  // NOLINT(google-explicit-constructor)
  static Status Ok() { return {}; }
  bool ok() const { return err_ == 0; }
  explicit operator bool() const { return ok(); }
  int error() const { return err_; }

 private:
  int err_ = 0;
};

// Propagate an error from an expression yielding Result or Status.
#define COWFS_TRY(expr)                                             \
  do {                                                              \
    auto&& cowfs_try_r_ = (expr);                                   \
    if (!cowfs_try_r_) return ::cowfs::Errno{cowfs_try_r_.error()}; \
  } while (0)

}  // namespace cowfs
