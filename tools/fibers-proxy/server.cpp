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
#include <fibers/stream_listener.hpp>

#include "accept.hpp"
#include "certificates.hpp"
#include "forward.hpp"
#include "pipe_end.hpp"

namespace fibers_proxy {

using fibers_tools::certificate_set;

namespace {
// Connection fibers do TLS handshakes (certificate verification is stack-hungry) and hold a
// 16 KiB buffer per direction.
constexpr std::size_t plain_stack = 64 * 1024;
constexpr std::size_t tls_stack = 256 * 1024;
}  // namespace

// One configuration in force, with what is built from it. A connection keeps the generation
// it was accepted under until it ends, so a reload (SIGHUP) never changes the rules of a
// connection in flight, and an old generation is freed with its last connection.
struct generation {
  explicit generation(config c) : cfg(std::move(c)), pool(cfg) {
    if (cfg.terminate_tls()) {
      certificates = std::make_unique<certificate_set>(cfg.tls_cert, cfg.tls_key);
    }
  }
  const config cfg;
  mutable upstream_pool pool;  // refers to cfg; its state is atomics
  std::unique_ptr<certificate_set> certificates;  // when terminating TLS
};

struct proxy_server::shared {
  shared(const config& c, proxy_stats& s) : stats(s), current(std::make_shared<generation>(c)) {}
  proxy_stats& stats;
  std::atomic<std::shared_ptr<const generation>> current;
  std::atomic<std::size_t> open{0};   // client connections now, all threads (the limit)
  fibers_tools::emfile_log emfile{"fibers-proxy"};
};

namespace {

using shared_state = proxy_server::shared;

void serve_client(fibers::tcp_stream sock, const generation& gen, thread_counters& counters) {
  const config& cfg = gen.cfg;
  sock.set_nodelay(true);
  pipe_end client;
  std::error_code ec;
  if (cfg.terminate_tls()) {
    fibers::tls::stream t(std::move(sock), gen.certificates->context());
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
  upstream_pool& pool = gen.pool;
  pipe_end upstream = pool.connect(counters, chosen, ec, what);
  if (ec) {
    counters.count(ec == fibers::errc::canceled ? error_kind::drained : error_kind::connect_failed);
    return;
  }
  struct release_on_exit {
    upstream_pool& pool;
    std::size_t chosen;
    ~release_on_exit() { pool.release(chosen); }
  } release{pool, chosen};
  forward(client, upstream, cfg, counters);
}

void accept_loop(fibers::stream_listener& listener, const std::shared_ptr<shared_state>& sh,
                 thread_counters& counters) {
  for (;;) {
    std::error_code ec;
    fibers::tcp_stream conn = listener.accept(ec);
    std::shared_ptr<const generation> gen = sh->current.load();
    const config& cfg = gen->cfg;
    if (ec == fibers::errc::canceled || ec == fibers::errc::closed) return;
    if (ec) {
      // Out of fds: the connection stays queued in the backlog. Pause (no busy retry), go on.
      if (out_of_descriptors(ec)) {
        counters.count(error_kind::accept_emfile);
        sh->emfile.note(ec, cfg.accept_backoff);
      } else {
        counters.count(error_kind::other);
      }
      const auto pause = cfg.accept_backoff;
      gen.reset();  // not held across the pause
      fibers::this_fiber::sleep_for(pause, ec);
      if (ec) return;
      continue;
    }
    if (sh->open.fetch_add(1, std::memory_order_relaxed) >= cfg.max_conns) {
      // Over the limit: refuse now rather than queue without bound.
      sh->open.fetch_sub(1, std::memory_order_relaxed);
      counters.count(error_kind::refused_max_conns);
      conn.close();
      continue;
    }
    thread_counters::add(counters.accepted, 1);
    const std::size_t stack = cfg.terminate_tls() || cfg.upstream_tls ? tls_stack : plain_stack;
    fibers::spawn({.name = "client", .stack_size = stack},
                  [conn = std::move(conn), sh, gen = std::move(gen), &counters]() mutable {
                    try {
                      serve_client(std::move(conn), *gen, counters);
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
  const fibers_tools::accept_loop loop = [sh = shared_](fibers::stream_listener& listener,
                                                        std::size_t t) {
    accept_loop(listener, sh, sh->stats.thread(t));
  };
  for (const auto& ep : cfg.listen) {
    fibers::endpoint where;
    try {
      auto started = fibers_tools::start_acceptors(rt, ep, loop, where);
      for (auto& a : started) acceptors_.push_back(std::move(a));
    } catch (...) {
      stop();
      throw;
    }
    bound_.push_back(where);
  }
}

proxy_server::~proxy_server() { stop(); }

void proxy_server::reload(const config& cfg) {
  auto next = std::make_shared<const generation>(cfg);  // throws: the old one stays
  shared_->current.store(std::move(next));
}

std::vector<std::vector<std::string>> proxy_server::certificate_names() const {
  auto gen = shared_->current.load();
  return gen->certificates ? gen->certificates->names() : std::vector<std::vector<std::string>>{};
}

void proxy_server::stop() { fibers_tools::stop_acceptors(acceptors_); }

}  // namespace fibers_proxy
