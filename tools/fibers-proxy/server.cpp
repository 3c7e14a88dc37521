// tools/fibers-proxy/server.cpp - acceptors and the life of one client connection.
#include "server.hpp"

#include <cerrno>
#include <cstdio>
#include <exception>
#include <string>
#include <system_error>
#include <utility>

#include <fmt/core.h>

#include <fibers/error.hpp>
#include <fibers/future.hpp>
#include <fibers/stream_listener.hpp>

#include "certificates.hpp"
#include "forward.hpp"
#include "pipe_end.hpp"

namespace fibers_proxy {

namespace {
// How often at most the acceptors report running out of file descriptors.
constexpr auto emfile_log_interval = std::chrono::seconds(5);
// Connection fibers do TLS handshakes (certificate verification is stack-hungry) and hold a
// 16 KiB buffer per direction.
constexpr std::size_t plain_stack = 64 * 1024;
constexpr std::size_t tls_stack = 256 * 1024;
}  // namespace

struct proxy_server::shared {
  shared(const config& c, proxy_stats& s) : cfg(c), stats(s), pool(c) {
    if (c.terminate_tls()) certificates = std::make_unique<certificate_set>(c.tls_cert, c.tls_key);
  }
  const config& cfg;
  proxy_stats& stats;
  upstream_pool pool;
  std::unique_ptr<certificate_set> certificates;  // when terminating TLS
  std::atomic<std::size_t> open{0};   // client connections now, all threads (the limit)
  std::atomic<fibers::clock::rep> emfile_logged{0};
  std::atomic<std::uint64_t> emfile_since_log{0};
};

namespace {

using shared_state = proxy_server::shared;

// One message per interval over all acceptors, with how many back-offs it covers.
void log_emfile(shared_state& sh, const std::error_code& ec) {
  sh.emfile_since_log.fetch_add(1, std::memory_order_relaxed);
  const auto now = fibers::clock::now().time_since_epoch().count();
  auto last = sh.emfile_logged.load(std::memory_order_relaxed);
  const auto every = std::chrono::duration_cast<fibers::clock::duration>(emfile_log_interval).count();
  if (last != 0 && now - last < every) return;
  if (!sh.emfile_logged.compare_exchange_strong(last, now, std::memory_order_relaxed)) return;
  fmt::print(stderr,
             "fibers-proxy: accept: {}; pausing accepts {} ms at a time ({} pauses since the last "
             "message)\n",
             ec.message(),
             std::chrono::duration_cast<std::chrono::milliseconds>(sh.cfg.accept_backoff).count(),
             sh.emfile_since_log.exchange(0, std::memory_order_relaxed));
}

void serve_client(fibers::tcp_stream sock, shared_state& sh, thread_counters& counters) {
  const config& cfg = sh.cfg;
  sock.set_nodelay(true);
  pipe_end client;
  std::error_code ec;
  if (cfg.terminate_tls()) {
    fibers::tls::stream t(std::move(sock), sh.certificates->context());
    t.handshake(ec, fibers::deadline::after(cfg.connect_timeout));
    if (ec) {
      counters.count(ec == fibers::errc::canceled ? error_kind::drained : error_kind::tls_client);
      return;
    }
    client = pipe_end(std::move(t));
  } else {
    client = pipe_end(std::move(sock));
  }
  std::string what;
  std::size_t chosen = 0;
  pipe_end upstream = sh.pool.connect(counters, chosen, ec, what);
  if (ec) {
    counters.count(ec == fibers::errc::canceled ? error_kind::drained : error_kind::connect_failed);
    return;
  }
  struct release_on_exit {
    upstream_pool& pool;
    std::size_t chosen;
    ~release_on_exit() { pool.release(chosen); }
  } release{sh.pool, chosen};
  forward(client, upstream, cfg, counters);
}

void accept_loop(fibers::stream_listener& listener, const std::shared_ptr<shared_state>& sh,
                 thread_counters& counters) {
  const std::size_t stack = sh->cfg.terminate_tls() || sh->cfg.upstream_tls ? tls_stack : plain_stack;
  for (;;) {
    std::error_code ec;
    fibers::tcp_stream conn = listener.accept(ec);
    if (ec == fibers::errc::canceled || ec == fibers::errc::closed) return;
    if (ec) {
      // Out of fds: the connection stays queued in the backlog. Pause (no busy retry), go on.
      if (out_of_descriptors(ec)) {
        counters.count(error_kind::accept_emfile);
        log_emfile(*sh, ec);
      } else {
        counters.count(error_kind::other);
      }
      fibers::this_fiber::sleep_for(sh->cfg.accept_backoff, ec);
      if (ec) return;
      continue;
    }
    if (sh->open.fetch_add(1, std::memory_order_relaxed) >= sh->cfg.max_conns) {
      // Over the limit: refuse now rather than queue without bound.
      sh->open.fetch_sub(1, std::memory_order_relaxed);
      counters.count(error_kind::refused_max_conns);
      conn.close();
      continue;
    }
    thread_counters::add(counters.accepted, 1);
    fibers::spawn({.name = "client", .stack_size = stack},
                  [conn = std::move(conn), sh, &counters]() mutable {
                    try {
                      serve_client(std::move(conn), *sh, counters);
                    } catch (const fibers::canceled&) {
                      counters.count(error_kind::drained);
                    } catch (const std::exception& e) {
                      counters.count(error_kind::other);
                      fmt::print(stderr, "fibers-proxy: connection failed: {}\n", e.what());
                    }
                    sh->open.fetch_sub(1, std::memory_order_relaxed);
                    thread_counters::add(counters.finished, 1);
                  })
        .detach();
  }
}

}  // namespace

proxy_server::proxy_server(fibers::runtime& rt, const config& cfg, proxy_stats& stats)
    : shared_(std::make_shared<shared>(cfg, stats)) {
  fibers::listen_options lo;
  lo.reuse_port = true;
  for (const auto& ep : cfg.listen) {
    fibers::endpoint where = ep;
    for (std::size_t t = 0; t < rt.io_threads(); ++t) {
      fibers::promise<fibers::endpoint> bound;
      auto result = bound.get_future();
      acceptors_.push_back(rt.spawn_on(
          t, "acceptor",
          [bound = std::move(bound), where, lo, sh = shared_, t]() mutable {
            fibers::stream_listener listener;
            try {
              listener = fibers::stream_listener::bind(where, lo);
              bound.set_value(listener.local_endpoint());
            } catch (...) {
              bound.set_exception(std::current_exception());
              return;
            }
            accept_loop(listener, sh, sh->stats.thread(t));
          }));
      try {
        where = result.get();  // the first bind fixes the port for the other threads
      } catch (...) {
        stop();
        throw;
      }
    }
    bound_.push_back(where);
  }
}

proxy_server::~proxy_server() { stop(); }

std::vector<std::vector<std::string>> proxy_server::certificate_names() const {
  return shared_->certificates ? shared_->certificates->names() : std::vector<std::vector<std::string>>{};
}

void proxy_server::stop() {
  for (auto& a : acceptors_) a.cancel();
  for (auto& a : acceptors_) a.join();
  acceptors_.clear();
}

}  // namespace fibers_proxy
