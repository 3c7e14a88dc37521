// tests/dns_test_server.hpp - a scriptable DNS server for tests and benchmarks: fibers on
// 127.0.0.1 answering over UDP and TCP (same port) from per-name rules - addresses, delays,
// drops, truncation (TC bit over UDP, so the client retries over TCP), SERVFAIL, REFUSED,
// NXDOMAIN, no data. Nothing leaves the loopback interface.
#pragma once

#include <arpa/inet.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "fibers/fibers.hpp"

namespace fibers_test {

/// How the server answers one name.
struct dns_rule {
  std::vector<std::string> a{};   ///< A answers ("10.0.0.1")
  std::vector<std::string> aaaa{};  ///< AAAA answers ("::1")
  int rcode = 0;                  ///< 0 NOERROR (no answers of a type: "no data"), 2 SERVFAIL, 3 NXDOMAIN, 5 REFUSED
  bool drop = false;              ///< never answer
  std::chrono::milliseconds delay{0};  ///< answer this much later
  bool truncate = false;          ///< over UDP: TC bit and no answers; over TCP: the answer
  std::uint32_t ttl = 60;         ///< TTL of the A records (seconds)
  std::optional<std::uint32_t> aaaa_ttl{};  ///< TTL of the AAAA records (default: ttl)
};

/// The server. Construct it on a fiber; it serves on I/O thread `thread` of that fiber's
/// runtime (the client's thread or another) until destroyed (destroy it on a fiber too).
class dns_server {
 public:
  explicit dns_server(std::size_t thread = 0) {
    // The same port for UDP and TCP: take a free UDP port, retry if its TCP twin is taken.
    for (int tries = 0;; ++tries) {
      udp_ = fibers::udp_socket::bind(fibers::endpoint::loopback_v4(0));
      port_ = udp_.local_endpoint().port();
      std::error_code ec;
      tcp_ = fibers::tcp_listener::bind(fibers::endpoint::loopback_v4(port_), ec);
      if (!ec) break;
      if (tries == 50) throw std::system_error(ec, "dns_server: no port free for both UDP and TCP");
    }
    int big = 4 << 20;  // capped at net.core.rmem_max; bursts of queries should not overflow
    ::setsockopt(udp_.native_handle(), SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    auto* rt = fibers::runtime::current();
    udp_loop_ = rt->spawn_on(thread, "dns-udp", [this] { serve_udp(); });
    tcp_loop_ = rt->spawn_on(thread, "dns-tcp", [this] { serve_tcp(); });
  }
  dns_server(const dns_server&) = delete;
  dns_server& operator=(const dns_server&) = delete;
  ~dns_server() {
    udp_loop_.cancel();
    tcp_loop_.cancel();
    udp_loop_.join();
    tcp_loop_.join();
  }

  /// "127.0.0.1:port", for dns::options::servers.
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  std::uint16_t port() const { return port_; }
  /// Options that send every query here (one try of `try_timeout`).
  fibers::dns::options options(std::chrono::milliseconds try_timeout = std::chrono::milliseconds(2000),
                               int attempts = 1) const {
    fibers::dns::options o;
    o.servers = {address()};
    o.attempts = attempts;
    o.try_timeout = try_timeout;
    return o;
  }

  /// The rule for `name` (lower case, no final dot).
  void set(const std::string& name, dns_rule r) {
    std::lock_guard lk(mu_);
    rules_[name] = std::move(r);
  }
  /// The rule for names without one (default: NXDOMAIN).
  void set_fallback(dns_rule r) {
    std::lock_guard lk(mu_);
    fallback_ = std::move(r);
  }
  /// Stops counting queries per name (benchmarks: millions of names).
  void count_names(bool on) {
    std::lock_guard lk(mu_);
    count_names_ = on;
  }
  /// Queries received (UDP + TCP), over TCP alone, and for one name.
  std::size_t queries() const { return udp_queries_.load() + tcp_queries_.load(); }
  std::size_t tcp_queries() const { return tcp_queries_.load(); }
  std::size_t queries_for(const std::string& name) const {
    std::lock_guard lk(mu_);
    auto it = per_name_.find(name);
    return it == per_name_.end() ? 0 : it->second;
  }

 private:
  struct question {
    std::string name;
    std::uint16_t type = 0;
    std::size_t end = 0;  // offset just past the question
  };

  static std::optional<question> parse(const unsigned char* p, std::size_t n) {
    if (n < 12) return std::nullopt;
    question q;
    std::size_t i = 12;
    for (;;) {
      if (i >= n) return std::nullopt;
      const unsigned len = p[i++];
      if (len == 0) break;
      if (len > 63 || i + len > n) return std::nullopt;
      if (!q.name.empty()) q.name += '.';
      for (unsigned k = 0; k < len; ++k) q.name += static_cast<char>(std::tolower(p[i + k]));
      i += len;
    }
    if (i + 4 > n) return std::nullopt;
    q.type = static_cast<std::uint16_t>(p[i] << 8 | p[i + 1]);
    q.end = i + 4;
    return q;
  }

  dns_rule rule_for(const std::string& name) {
    std::lock_guard lk(mu_);
    if (count_names_) ++per_name_[name];
    auto it = rules_.find(name);
    return it != rules_.end() ? it->second : fallback_;
  }

  /// The reply to the query `p` (n bytes) under rule `r`; empty: no reply.
  static std::string reply(const unsigned char* p, std::size_t n, const question& q, const dns_rule& r, bool udp) {
    std::string out(reinterpret_cast<const char*>(p), q.end);  // header + question
    auto put16 = [&](std::uint16_t v) {
      out += static_cast<char>(v >> 8);
      out += static_cast<char>(v & 0xff);
    };
    std::vector<std::string> rdata;
    const std::uint32_t ttl = q.type == 28 ? r.aaaa_ttl.value_or(r.ttl) : r.ttl;
    if (r.rcode == 0 && !(udp && r.truncate)) {
      if (q.type == 1) {
        for (const auto& a : r.a) {
          in_addr x{};
          ::inet_pton(AF_INET, a.c_str(), &x);
          rdata.emplace_back(reinterpret_cast<const char*>(&x), 4);
        }
      } else if (q.type == 28) {
        for (const auto& a : r.aaaa) {
          in6_addr x{};
          ::inet_pton(AF_INET6, a.c_str(), &x);
          rdata.emplace_back(reinterpret_cast<const char*>(&x), 16);
        }
      }
    }
    // Flags: QR, the query's opcode and RD, RA, TC when truncating, the rcode.
    std::uint16_t flags = static_cast<std::uint16_t>(0x8000 | (p[2] & 0x79) << 8 | 0x80 | (r.rcode & 0xf));
    if (udp && r.truncate) flags |= 0x0200;
    out[2] = static_cast<char>(flags >> 8);
    out[3] = static_cast<char>(flags & 0xff);
    out[4] = 0, out[5] = 1;                                                      // QDCOUNT
    out[6] = 0, out[7] = static_cast<char>(rdata.size());                        // ANCOUNT
    out[8] = out[9] = out[10] = out[11] = 0;                                      // NS, AR
    for (const auto& d : rdata) {
      put16(0xc00c);  // the question's name
      put16(q.type);
      put16(1);       // IN
      put16(static_cast<std::uint16_t>(ttl >> 16)), put16(static_cast<std::uint16_t>(ttl & 0xffff));
      put16(static_cast<std::uint16_t>(d.size()));
      out += d;
    }
    (void)n;
    return out;
  }

  void serve_udp() {
    fibers::scope delayed;  // late answers; canceled with the server
    std::vector<unsigned char> buf(4096);
    try {
      for (;;) {
        fibers::endpoint from;
        const std::size_t n = udp_.recv_from({buf.data(), buf.size()}, from);
        ++udp_queries_;
        auto q = parse(buf.data(), n);
        if (!q) continue;
        const dns_rule r = rule_for(q->name);
        if (r.drop) continue;
        std::string out = reply(buf.data(), n, *q, r, true);
        if (r.delay.count() > 0) {
          delayed.spawn([this, out = std::move(out), from, d = r.delay] {
            fibers::this_fiber::sleep_for(d);
            std::error_code ec;
            udp_.send_to({out.data(), out.size()}, from, ec);
          });
        } else {
          std::error_code ec;
          udp_.send_to({out.data(), out.size()}, from, ec);
        }
      }
    } catch (const fibers::canceled&) {
    }
    delayed.cancel();
    try {
      delayed.join();
    } catch (...) {
    }
  }

  void serve_tcp() {
    fibers::scope conns;
    try {
      for (;;) {
        conns.spawn([this, s = tcp_.accept()]() mutable {
          try {
            for (;;) {
              unsigned char len[2];
              s.read_exact({len, 2});
              std::vector<unsigned char> msg(static_cast<std::size_t>(len[0] << 8 | len[1]));
              s.read_exact({msg.data(), msg.size()});
              ++tcp_queries_;
              auto q = parse(msg.data(), msg.size());
              if (!q) return;
              const dns_rule r = rule_for(q->name);
              if (r.drop) continue;
              if (r.delay.count() > 0) fibers::this_fiber::sleep_for(r.delay);
              std::string out = reply(msg.data(), msg.size(), *q, r, false);
              unsigned char hdr[2] = {static_cast<unsigned char>(out.size() >> 8), static_cast<unsigned char>(out.size())};
              s.write_all({hdr, 2});
              s.write_all({out.data(), out.size()});
            }
          } catch (const std::exception&) {
            // peer closed, or the server stops
          }
        });
      }
    } catch (const fibers::canceled&) {
    }
    conns.cancel();
    try {
      conns.join();
    } catch (...) {
    }
  }

  fibers::udp_socket udp_;
  fibers::tcp_listener tcp_;
  std::uint16_t port_ = 0;
  fibers::fiber udp_loop_;
  fibers::fiber tcp_loop_;
  mutable std::mutex mu_;
  std::map<std::string, dns_rule> rules_;
  std::map<std::string, std::size_t> per_name_;
  dns_rule fallback_{.rcode = 3};
  bool count_names_ = true;
  std::atomic<std::size_t> udp_queries_{0};
  std::atomic<std::size_t> tcp_queries_{0};
};

}  // namespace fibers_test
