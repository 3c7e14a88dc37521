// lib/dns/happy_eyeballs.cpp - connecting by name: stream_socket::connect(host, port) with
// Happy Eyeballs v2 (RFC 8305), and udp_socket::send_to(host, port).
//
// The attempts are child fibers of a scope on the caller's thread, so none outlives the call:
// the first connection to succeed is kept, the scope's cancel() stops the others (their
// connect() fails with errc::canceled and closes its socket), and join() waits for them.
#include <sys/socket.h>

#include <optional>
#include <string>
#include <vector>

#include "fibers/channel.hpp"
#include "fibers/dns.hpp"
#include "fibers/error.hpp"
#include "fibers/scope.hpp"
#include "fibers/stream_socket.hpp"
#include "fibers/udp_socket.hpp"

namespace fibers {
namespace {

/// RFC 8305 section 5: the recommended Connection Attempt Delay.
constexpr auto attempt_delay = std::chrono::milliseconds(250);

/// RFC 8305 section 4: IPv6 first, then alternate the families (First Address Family Count 1),
/// keeping the order within each family.
std::vector<endpoint> interleave(const std::vector<endpoint>& eps) {
  std::vector<endpoint> v6, v4, out;
  for (const auto& ep : eps) (ep.family() == AF_INET6 ? v6 : v4).push_back(ep);
  out.reserve(eps.size());
  for (std::size_t i = 0; i < std::max(v6.size(), v4.size()); ++i) {
    if (i < v6.size()) out.push_back(v6[i]);
    if (i < v4.size()) out.push_back(v4[i]);
  }
  return out;
}

struct attempt_result {
  stream_socket sock;
  std::error_code ec;
  endpoint failed;  // the address of the failure reported in ec, if any
};

/// Races connections to `eps` (Happy Eyeballs). Returns the winner, or the first failure (in
/// time) with its address, or timed_out/canceled.
attempt_result race(const std::vector<endpoint>& eps, deadline dl) {
  attempt_result res;
  if (eps.size() == 1) {
    res.sock = stream_socket::connect(eps.front(), res.ec, dl);
    if (res.ec) res.failed = eps.front();
    return res;
  }
  const std::vector<endpoint> order = interleave(eps);
  const clock::time_point until = dl.is_set() ? dl.when() : clock::time_point::max();
  channel<std::size_t> finished(order.size());  // index of each attempt as it ends
  std::vector<std::error_code> errors(order.size());
  std::optional<stream_socket> winner;
  std::optional<std::size_t> first_failure;
  std::size_t started = 0;
  std::size_t ended = 0;
  clock::time_point last_start;
  std::error_code own;  // the caller's deadline or cancellation

  scope s;
  auto start_next = [&] {
    const std::size_t i = started++;
    last_start = clock::now();
    s.spawn([&, i] {
      std::error_code ec;
      stream_socket sock = stream_socket::connect(order[i], ec, dl);
      if (!ec && !winner) winner.emplace(std::move(sock));  // a later success closes here
      errors[i] = ec;
      finished.try_send(i);
    });
  };
  try {
    start_next();
    while (!winner && ended < order.size()) {
      clock::time_point wake = until;
      if (started < order.size()) wake = std::min(wake, last_start + attempt_delay);
      std::error_code ec;
      std::optional<std::size_t> i = finished.recv(ec, deadline::at(wake));
      if (i) {
        ++ended;
        if (errors[*i] && !first_failure) first_failure = *i;
        // A failed attempt lets the next one start at once (RFC 8305 section 5).
        if (errors[*i] && started < order.size()) start_next();
        continue;
      }
      if (ec == std::errc::timed_out && started < order.size() && clock::now() >= last_start + attempt_delay &&
          clock::now() < until) {
        start_next();
        continue;
      }
      own = ec;  // the deadline (ours or inherited) or a cancel
      break;
    }
    s.cancel();
    s.join();
  } catch (const canceled&) {
    own = make_error_code(errc::canceled);
  } catch (const std::system_error& e) {
    own = e.code();
  }
  if (winner) {
    res.sock = std::move(*winner);
    return res;
  }
  if (own) {
    res.ec = own;
    return res;
  }
  const std::size_t f = first_failure.value_or(0);
  res.ec = errors[f] ? errors[f] : std::make_error_code(std::errc::timed_out);
  res.failed = order[f];
  return res;
}

stream_socket connect_by_name(std::string_view host, std::uint16_t port, const dns::options& opts,
                              std::error_code& ec, deadline dl, std::string* what) {
  ec.clear();
  // The lookup and the attempts share the caller's deadline.
  std::vector<endpoint> eps = dns::resolve(host, port, ec, opts, dl);
  if (ec) {
    if (what != nullptr) *what = "resolve " + std::string(host);
    return {};
  }
  attempt_result r = race(eps, dl);
  ec = r.ec;
  if (ec && what != nullptr && r.failed.family() != AF_UNSPEC) *what = r.failed.to_string();
  return std::move(r.sock);
}

std::string host_port(std::string_view host, std::uint16_t port) {
  if (host.find(':') != std::string_view::npos) return "[" + std::string(host) + "]:" + std::to_string(port);
  return std::string(host) + ":" + std::to_string(port);
}

[[noreturn]] void throw_connect(const std::error_code& ec, std::string_view host, std::uint16_t port,
                                const std::string& detail) {
  std::string what = "connect " + host_port(host, port);
  if (detail.rfind("resolve ", 0) == 0) what += ": " + detail;
  else if (!detail.empty()) what += " (" + detail + ")";
  throw_error(ec, what);
}

}  // namespace

stream_socket stream_socket::connect(const std::vector<endpoint>& eps, std::error_code& ec, deadline dl) {
  ec.clear();
  if (eps.empty()) {
    ec = std::make_error_code(std::errc::invalid_argument);
    return {};
  }
  attempt_result r = race(eps, dl);
  ec = r.ec;
  return std::move(r.sock);
}

stream_socket stream_socket::connect(const std::vector<endpoint>& eps, deadline dl) {
  if (eps.empty()) {
    throw std::system_error(std::make_error_code(std::errc::invalid_argument), "connect: no address to connect to");
  }
  attempt_result r = race(eps, dl);
  if (r.ec) {
    throw_error(r.ec, "connect " + (r.failed.family() != AF_UNSPEC ? r.failed : eps.front()).to_string());
  }
  return std::move(r.sock);
}

stream_socket stream_socket::connect(std::string_view host, std::uint16_t port, const dns::options& opts,
                                     std::error_code& ec, deadline dl) {
  return connect_by_name(host, port, opts, ec, dl, nullptr);
}

stream_socket stream_socket::connect(std::string_view host, std::uint16_t port, const dns::options& opts,
                                     deadline dl) {
  std::error_code ec;
  std::string detail;
  stream_socket s = connect_by_name(host, port, opts, ec, dl, &detail);
  if (ec) throw_connect(ec, host, port, detail);
  return s;
}

stream_socket stream_socket::connect(std::string_view host, std::uint16_t port, std::error_code& ec, deadline dl) {
  return connect(host, port, dns::options{}, ec, dl);
}

stream_socket stream_socket::connect(std::string_view host, std::uint16_t port, deadline dl) {
  return connect(host, port, dns::options{}, dl);
}

stream_socket stream_socket::connect(std::string_view host_and_port, std::error_code& ec, deadline dl) {
  std::string host;
  std::uint16_t port = 0;
  if (!dns::split_host_port(host_and_port, host, port)) {
    ec = std::make_error_code(std::errc::invalid_argument);
    return {};
  }
  return connect(host, port, dns::options{}, ec, dl);
}

stream_socket stream_socket::connect(std::string_view host_and_port, deadline dl) {
  std::string host;
  std::uint16_t port = 0;
  if (!dns::split_host_port(host_and_port, host, port)) {
    throw std::system_error(std::make_error_code(std::errc::invalid_argument),
                            "connect " + std::string(host_and_port) + ": expected host:port");
  }
  return connect(host, port, dns::options{}, dl);
}

std::size_t udp_socket::send_to(const_buffer buf, std::string_view host, std::uint16_t port, std::error_code& ec,
                                deadline dl) {
  ec.clear();
  const int fd = native_handle();
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (fd < 0 || ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    ec = std::make_error_code(std::errc::bad_file_descriptor);
    return 0;
  }
  dns::options opts;
  opts.families = ss.ss_family == AF_INET6 ? dns::family::ipv6 : dns::family::ipv4;
  const deadline whole = whole_call(dl);
  std::vector<endpoint> eps = dns::resolve(host, port, ec, opts, whole);
  if (ec) return 0;
  const endpoint* to = &eps.front();
  return send_to(buf, *to, ec, whole);
}

std::size_t udp_socket::send_to(const_buffer buf, std::string_view host, std::uint16_t port, deadline dl) {
  std::error_code ec;
  const std::size_t n = send_to(buf, host, port, ec, dl);
  if (ec) throw_error(ec, "send_to " + host_port(host, port));
  return n;
}

}  // namespace fibers
