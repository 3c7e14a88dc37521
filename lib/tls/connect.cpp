// lib/tls/connect.cpp - tls::connect: resolve + TCP connect (Happy Eyeballs) + verified
// handshake under one deadline.
#include <string>

#include "fibers/stream_socket.hpp"
#include "fibers/tls.hpp"

namespace fibers::tls {

namespace {
// "[::1]" -> "::1": the name the certificate is checked against.
std::string bare_host(std::string_view host) {
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return std::string(host);
}
}  // namespace

stream connect(std::string_view host, std::uint16_t port, const context& ctx, std::error_code& ec,
               deadline dl) {
  ec.clear();
  if (!dl.is_set()) dl = deadline::never();  // one absolute limit for every step below
  const std::string name = bare_host(host);
  tcp_stream sock = tcp_stream::connect(name, port, ec, dl);
  if (ec) return {};
  stream s(std::move(sock), ctx, name);
  s.handshake(ec, dl);
  if (ec) return {};
  return s;
}

stream connect(std::string_view host, std::uint16_t port, const context& ctx, deadline dl) {
  if (!dl.is_set()) dl = deadline::never();
  const std::string name = bare_host(host);
  stream s(tcp_stream::connect(name, port, dl), ctx, name);
  s.handshake(dl);
  return s;
}

}  // namespace fibers::tls
