// lib/tls/connect.cpp - tls::connect: TCP connect + verified handshake under one deadline.
#include <string>

#include "fibers/stream_socket.hpp"
#include "fibers/tls.hpp"

namespace fibers::tls {

namespace {
endpoint resolve_numeric(std::string_view host, std::uint16_t port, std::error_code& ec) {
  std::string h(host);
  if (h == "localhost") h = "127.0.0.1";
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  try {
    return endpoint::ip(h, port);
  } catch (const std::exception&) {
    ec = std::make_error_code(std::errc::invalid_argument);
    return {};
  }
}
}  // namespace

stream connect(std::string_view host, std::uint16_t port, const context& ctx, std::error_code& ec,
               deadline dl) {
  ec.clear();
  if (dl.is_set() == false) dl = deadline::never();
  const endpoint ep = resolve_numeric(host, port, ec);
  if (ec) return {};
  tcp_stream sock = tcp_stream::connect(ep, ec, dl);
  if (ec) return {};
  std::string name(host);
  if (name.size() > 2 && name.front() == '[' && name.back() == ']') name = name.substr(1, name.size() - 2);
  stream s(std::move(sock), ctx, name == "localhost" ? std::string_view("localhost") : std::string_view(name));
  s.handshake(ec, dl);
  if (ec) return {};
  return s;
}

stream connect(std::string_view host, std::uint16_t port, const context& ctx, deadline dl) {
  if (!dl.is_set()) dl = deadline::never();
  const endpoint ep = [&] {
    std::error_code ec;
    endpoint e = resolve_numeric(host, port, ec);
    if (ec) throw std::system_error(ec, "tls connect " + std::string(host) + ": not an IP address (names need fibers::dns)");
    return e;
  }();
  tcp_stream sock = tcp_stream::connect(ep, dl);
  std::string name(host);
  if (name.size() > 2 && name.front() == '[' && name.back() == ']') name = name.substr(1, name.size() - 2);
  stream s(std::move(sock), ctx, name);
  s.handshake(dl);
  return s;
}

}  // namespace fibers::tls
