// tools/common/pipe_end.hpp - one end of a connection of the tools: a plain TCP stream or a TLS
// stream over one, behind the few calls forwarding and echoing need.
#pragma once

#include <system_error>
#include <utility>
#include <variant>

#include <fibers/clock.hpp>
#include <fibers/stream_socket.hpp>
#include <fibers/tls.hpp>

namespace fibers_tools {

/// A client or upstream connection, plain or TLS. One fiber may read while another writes.
class pipe_end {
 public:
  pipe_end() = default;
  explicit pipe_end(fibers::tcp_stream s) : s_(std::move(s)) {}
  explicit pipe_end(fibers::tls::stream s) : s_(std::move(s)) {}

  std::size_t read_some(fibers::mutable_buffer b, std::error_code& ec, fibers::deadline dl) {
    return std::visit([&](auto& s) { return s.read_some(b, ec, dl); }, s_);
  }
  std::size_t read_exact(fibers::mutable_buffer b, std::error_code& ec, fibers::deadline dl) {
    return std::visit([&](auto& s) { return s.read_exact(b, ec, dl); }, s_);
  }
  std::size_t write_all(fibers::const_buffer b, std::error_code& ec, fibers::deadline dl) {
    return std::visit([&](auto& s) { return s.write_all(b, ec, dl); }, s_);
  }
  /// Tells the peer we will send no more (TCP: shutdown(SHUT_WR); TLS: close_notify) while
  /// the other direction goes on.
  void shutdown_write(std::error_code& ec, fibers::deadline dl) {
    if (auto* t = std::get_if<fibers::tcp_stream>(&s_)) {
      t->shutdown(fibers::tcp_stream::shutdown_type::write, ec);
    } else {
      std::get<fibers::tls::stream>(s_).shutdown(ec, dl);
    }
  }
  /// The TCP stream of a plain end (for splice), or nullptr for a TLS one.
  fibers::tcp_stream* tcp() noexcept { return std::get_if<fibers::tcp_stream>(&s_); }
  void close() noexcept {
    std::visit([](auto& s) { s.close(); }, s_);
  }

 private:
  std::variant<fibers::tcp_stream, fibers::tls::stream> s_;
};

}  // namespace fibers_tools
