// lib/net/io_wait.cpp
#include "net/io_wait.hpp"

#include "fibers/error.hpp"
#include "runtime/waiter.hpp"

namespace fibers::detail {

std::error_code wait_ready(io_slot* slot, io_dir dir, clock::time_point until) noexcept {
  waiter*& registered = dir == io_dir::read ? slot->reader : slot->writer;
  if (registered != nullptr) return make_error_code(errc::busy);
  waiter w;
  registered = &w;
  const wake_reason r = park(w, until, true, dir == io_dir::read ? "read" : "write", slot->fd);
  if (r == wake_reason::closed) return make_error_code(errc::closed);
  if (registered == &w) registered = nullptr;  // timed out or canceled: still registered
  switch (r) {
    case wake_reason::ready: return {};
    case wake_reason::timeout: return std::make_error_code(std::errc::timed_out);
    default: return make_error_code(errc::canceled);
  }
}

}  // namespace fibers::detail
