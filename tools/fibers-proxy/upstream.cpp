// tools/fibers-proxy/upstream.cpp - upstream selection, back-off and connecting.
#include "upstream.hpp"

#include <chrono>
#include <cstdio>
#include <stdexcept>

#include <fmt/core.h>

#include <fibers/error.hpp>
#include <fibers/stream_socket.hpp>

namespace fibers_proxy {

upstream_pool::upstream_pool(const config& cfg)
    : cfg_(cfg), entries_(new entry[cfg.upstreams.size()]), count_(cfg.upstreams.size()) {
  for (std::size_t i = 0; i < count_; ++i) {
    entry& e = entries_[i];
    e.addr = cfg.upstreams[i];
    try {
      e.literal = fibers::endpoint::ip(e.addr.host, e.addr.port);
    } catch (const std::invalid_argument&) {
      e.addresses = std::make_unique<address_cache>(e.addr.host, e.addr.port, cfg);
    }
  }
  if (cfg.upstream_tls) {
    fibers::tls::client_options o;
    o.ca_file = cfg.upstream_ca;
    tls_ = fibers::tls::context::client(o);
  }
}

std::size_t upstream_pool::pick(fibers::clock::time_point now) {
  const std::size_t start = next_.fetch_add(1, std::memory_order_relaxed);
  const auto t = now.time_since_epoch().count();
  std::size_t best = count_;
  for (std::size_t i = 0; i < count_; ++i) {
    std::size_t k = (start + i) % count_;
    if (entries_[k].down_until.load(std::memory_order_relaxed) > t) continue;
    if (cfg_.balance == balance_mode::round_robin) return k;
    if (best == count_ || entries_[k].active.load(std::memory_order_relaxed) <
                              entries_[best].active.load(std::memory_order_relaxed)) {
      best = k;
    }
  }
  return best != count_ ? best : start % count_;  // all in back-off: try anyway, not refuse
}

pipe_end upstream_pool::attempt(const entry& e, std::error_code& ec) {
  const auto dl = fibers::deadline::after(cfg_.connect_timeout);
  fibers::tcp_stream sock;
  if (e.literal) {
    sock = fibers::tcp_stream::connect(*e.literal, ec, dl);
  } else {
    // A name: its cached addresses (resolved again after the TTL), raced with Happy Eyeballs.
    const std::vector<fibers::endpoint> eps = e.addresses->get(ec, dl);
    if (ec) return {};
    sock = fibers::tcp_stream::connect(eps, ec, dl);
  }
  if (ec) return {};
  sock.set_nodelay(true);
  if (!cfg_.upstream_tls) return pipe_end(std::move(sock));
  const std::string& name = cfg_.upstream_sni.empty() ? e.addr.host : cfg_.upstream_sni;
  fibers::tls::stream tls(std::move(sock), tls_, name);
  tls.handshake(ec, dl);
  if (ec) return {};
  return pipe_end(std::move(tls));
}

pipe_end upstream_pool::connect(thread_counters& counters, std::size_t& chosen,
                                std::error_code& ec, std::string& what) {
  for (std::size_t tries = 0; tries <= cfg_.retries; ++tries) {
    chosen = pick(fibers::clock::now());
    entry& e = entries_[chosen];
    // Counted while connecting too, so that a burst of new clients spreads out.
    e.active.fetch_add(1, std::memory_order_relaxed);
    pipe_end p = attempt(e, ec);
    if (!ec) return p;
    e.active.fetch_sub(1, std::memory_order_relaxed);
    if (ec == fibers::errc::canceled) return {};
    if (ec == std::errc::timed_out) {
      counters.count(error_kind::connect_timeout);
    } else if (ec.category() == fibers::tls::error_category()) {
      counters.count(error_kind::tls_upstream);
    }
    what = fmt::format("connect {}: {}", e.addr.to_string(), ec.message());
    if (out_of_descriptors(ec)) continue;  // our own shortage, not the upstream's fault
    if (cfg_.upstream_backoff.count() > 0) {
      const auto now = fibers::clock::now();
      const auto until = (now + cfg_.upstream_backoff).time_since_epoch().count();
      // Log the transition to "down" only: one line per upstream per back-off period.
      if (e.down_until.exchange(until, std::memory_order_relaxed) <= now.time_since_epoch().count()) {
        fmt::print(stderr, "fibers-proxy: {}; skipping it for {:.1f} s\n", what,
                   std::chrono::duration<double>(cfg_.upstream_backoff).count());
      }
    }
  }
  return {};
}

}  // namespace fibers_proxy
