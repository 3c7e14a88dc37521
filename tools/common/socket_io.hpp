// tools/common/socket_io.hpp - the bundled tools' --socket-io flag: its value as the runtime
// option, and what the start-up line says about the path in use.
#pragma once

#include <string>

#include <fibers/runtime.hpp>

namespace fibers_tools {

/// "io_uring" or "epoll" (the flag's only values, checked by CLI11); empty: not given, so the
/// runtime follows FIBERS_SOCKET_IO, else epoll.
inline fibers::socket_io parse_socket_io(const std::string& value) {
  if (value.empty()) return fibers::socket_io::by_environment;
  return value == "io_uring" ? fibers::socket_io::io_uring : fibers::socket_io::epoll;
}

/// The start-up line's words for the socket path of `rt`: ", io_uring" on the ring; when the
/// ring was asked for (`asked`) and this kernel refused it, says so; nothing on epoll.
inline std::string socket_io_note(const fibers::runtime& rt, fibers::socket_io asked) {
  if (rt.sockets() == fibers::socket_io::io_uring) return ", io_uring";
  if (asked == fibers::socket_io::io_uring) return ", epoll (io_uring cannot drive the threads here)";
  return "";
}

}  // namespace fibers_tools
