// One error type for the whole project: every failure a user can cause (bad file, bad option,
// bad data line) is thrown as ctrust::Error with a message that names the file and the problem.
// The CLI catches it, prints "ctrust: error: <what>" on one line and exits with status 1.
#pragma once
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace ctrust {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// fail("{}: tensor '{}' has unknown type {}", path, name, t)  — throws ctrust::Error.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace ctrust
