// lib/net/tcp_server.cpp - per-thread SO_REUSEPORT acceptors.
#include "fibers/tcp_server.hpp"

#include <unistd.h>

#include <cstdio>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "fibers/affinity.hpp"
#include "fibers/error.hpp"
#include "fibers/future.hpp"
#include "fibers/runtime.hpp"

namespace fibers {
namespace {

constexpr auto accept_backoff = std::chrono::milliseconds(10);

/// An accepted fd on its way to another I/O thread: closed if it never gets there (the
/// runtime shut down before the task ran, or the fiber could not be spawned).
class fd_in_transit {
 public:
  explicit fd_in_transit(int fd) noexcept : fd_(fd) {}
  fd_in_transit(fd_in_transit&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  fd_in_transit& operator=(fd_in_transit&&) = delete;
  ~fd_in_transit() {
    if (fd_ >= 0) ::close(fd_);
  }
  int take() noexcept { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

void serve_connection(tcp_stream& conn, const tcp_server::handler& h) {
  try {
    h(conn);
  } catch (const std::system_error&) {
    // Reset peers, timeouts and cancellation end one connection; they are not server errors.
  } catch (const std::exception& e) {
    std::fprintf(stderr, "libfibers: tcp_server handler for %s failed: %s\n",
                 conn.is_open() ? conn.peer_endpoint().to_string().c_str() : "(closed)", e.what());
  }
}

// Connection fibers share ownership of the handler: they may outlive the acceptor.
void accept_loop(stream_listener& listener, const std::shared_ptr<const tcp_server::handler>& h,
                 std::atomic<std::size_t>& accepted, bool follow_cpu) {
  runtime& rt = *runtime::current();
  const std::size_t here = runtime::current_thread_index();
  for (;;) {
    std::error_code ec;
    tcp_stream conn = listener.accept(ec);
    if (ec == errc::canceled || ec == errc::closed) return;
    if (ec) {
      // EMFILE/ENFILE/ENOBUFS: the connection stays queued; try again shortly.
      this_fiber::sleep_for(accept_backoff, ec);
      if (ec) return;
      continue;
    }
    accepted.fetch_add(1, std::memory_order_relaxed);
    const std::size_t home = follow_cpu ? affine_thread(rt, conn.native_handle(), here) : here;
    if (home == here) {
      spawn("connection", [conn = std::move(conn), h]() mutable { serve_connection(conn, *h); }).detach();
      continue;
    }
    // Registered with the home thread's reactor only: a registration left here would take an
    // event on this thread for every packet of a connection served elsewhere.
    rt.post([fd = fd_in_transit(conn.release()), h]() mutable {
      try {
        tcp_stream moved(fd.take());
        serve_connection(moved, *h);
      } catch (const std::exception& e) {  // no reactor registration for it here
        std::fprintf(stderr, "libfibers: tcp_server could not hand a connection over: %s\n", e.what());
      }
    }, home);
  }
}

}  // namespace

tcp_server tcp_server::start(const endpoint& ep, handler h, const server_options& opts) {
  runtime* rt = runtime::current();
  if (rt == nullptr) throw std::logic_error("fibers::tcp_server::start: not on a runtime thread");
  return start(*rt, ep, std::move(h), opts);
}

tcp_server tcp_server::start(runtime& rt, const endpoint& ep, handler h, const server_options& opts) {
  const std::size_t n = opts.threads == 0 ? rt.io_threads() : std::min(opts.threads, rt.io_threads());
  listen_options lo = opts.listen;
  if (n > 1) lo.reuse_port = true;
  auto shared = std::make_shared<const handler>(std::move(h));
  tcp_server server;
  endpoint where = ep;
  for (std::size_t i = 0; i < n; ++i) {
    promise<endpoint> bound;
    future<endpoint> result = bound.get_future();
    std::atomic<std::size_t>* accepted = &server.stats_->accepted;
    const bool follow = opts.follow_incoming_cpu;
    server.acceptors_.push_back(rt.spawn_on(i, "acceptor", [bound = std::move(bound), where, lo, shared, accepted, follow]() mutable {
      stream_listener listener;
      try {
        listener = stream_listener::bind(where, lo);
        bound.set_value(listener.local_endpoint());
      } catch (...) {
        bound.set_exception(std::current_exception());
        return;
      }
      accept_loop(listener, shared, *accepted, follow);
    }));
    try {
      where = result.get();  // the first bind fixes the port for the others
    } catch (...) {
      server.stop();
      server.join();
      throw;
    }
    if (i == 0) server.bound_ = where;
  }
  return server;
}

tcp_server& tcp_server::operator=(tcp_server&& other) noexcept {
  if (this != &other) {
    stop();
    join();
    bound_ = other.bound_;
    acceptors_ = std::move(other.acceptors_);
    stats_ = std::move(other.stats_);
  }
  return *this;
}

tcp_server::~tcp_server() {
  if (!acceptors_.empty()) {
    stop();
    join();
  }
}

void tcp_server::stop() {
  for (auto& f : acceptors_) {
    if (f.joinable()) f.cancel();
  }
}

void tcp_server::join() {
  for (auto& f : acceptors_) {
    if (!f.joinable()) continue;
    try {
      f.join();
    } catch (...) {
      // An acceptor ends by cancellation; nothing it throws is worth more than stopping.
    }
  }
  acceptors_.clear();
}

}  // namespace fibers
