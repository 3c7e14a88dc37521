// fibers/detail/socket_base.hpp - what every libfibers socket shares: the fd, its reactor
// registration, the default timeout, close() and local_endpoint().
#pragma once

#include <optional>
#include <string>
#include <system_error>

#include "fibers/clock.hpp"
#include "fibers/endpoint.hpp"

namespace fibers::detail {

struct io_slot;
class io_thread;

class socket_base {
 public:
  socket_base(const socket_base&) = delete;
  socket_base& operator=(const socket_base&) = delete;

  /// True while the socket holds an open fd.
  bool is_open() const noexcept { return fd_ >= 0; }
  /// The fd (-1 when closed). Do not close it behind the socket's back.
  int native_handle() const noexcept { return fd_; }
  /// Closes the socket. A fiber parked on it wakes with errc::closed. Idempotent.
  void close() noexcept;
  /// Gives up ownership of the fd without closing it (deregisters it from the reactor),
  /// e.g. to hand a connection to another I/O thread. Returns -1 if closed.
  int release() noexcept;
  /// Default timeout for calls given no deadline (none by default: wait until ready or
  /// canceled). Applied per call: each call's deadline is now + timeout.
  void set_timeout(std::optional<clock::duration> t) noexcept { timeout_ = t; }
  /// The default timeout, if any.
  std::optional<clock::duration> timeout() const noexcept { return timeout_; }
  /// The local address (getsockname).
  endpoint local_endpoint() const;

 protected:
  socket_base() noexcept = default;
  socket_base(socket_base&& other) noexcept;
  socket_base& operator=(socket_base&& other) noexcept;
  ~socket_base();
  /// Takes ownership of a non-blocking fd and registers it with the calling thread's reactor.
  void adopt(int fd, const endpoint& peer);
  /// The slot for an operation named `op`; throws std::logic_error off the owner thread.
  /// Returns nullptr (and sets ec to bad_file_descriptor) when closed.
  io_slot* slot_for(const char* op, std::error_code& ec) const;
  /// "op peer" for error messages.
  std::string describe(const char* op) const;
  /// The absolute deadline for a call given `dl`.
  clock::time_point resolve(deadline dl) const noexcept;

  int fd_ = -1;
  io_slot* slot_ = nullptr;
  io_thread* owner_ = nullptr;  // the I/O thread whose reactor holds slot_
  std::optional<clock::duration> timeout_;
  endpoint peer_;  // remembered for error messages and peer_endpoint()
};

}  // namespace fibers::detail
