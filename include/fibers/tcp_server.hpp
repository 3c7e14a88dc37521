// fibers/tcp_server.hpp - accept connections on every I/O thread and serve each in a fiber.
#pragma once

#include "fibers/detail/config.hpp"

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include "fibers/endpoint.hpp"
#include "fibers/fiber.hpp"
#include "fibers/stream_listener.hpp"
#include "fibers/stream_socket.hpp"

namespace fibers {

class runtime;

/// Options for tcp_server::start.
struct server_options {
  /// Listener settings; reuse_port is forced on when more than one thread listens.
  listen_options listen{};
  /// How many I/O threads listen (0: all of the runtime's). Each gets its own SO_REUSEPORT
  /// listener, so the kernel spreads connections over the threads with no hand-off.
  std::size_t threads = 0;
  /// Serve each connection on the I/O thread running on the CPU that received its packets
  /// (fibers::affine_thread, fibers/affinity.hpp) instead of the thread that accepted it. For
  /// servers whose clients share the machine (loopback, a sidecar): both ends then share a
  /// thread and a CPU. Costs one getsockopt per connection and, when the thread differs, a
  /// hand-off of the connection to it.
  bool follow_incoming_cpu = false;
};

/// A TCP server spread over a runtime's I/O threads: one listener and acceptor fiber per
/// thread, one fiber per connection running `handler` on the thread that accepted it (or, with
/// server_options::follow_incoming_cpu, on the thread where its packets arrive).
///
///     auto server = fibers::tcp_server::start(fibers::endpoint::parse("0.0.0.0:7000"),
///         [](fibers::tcp_stream& conn) { echo(conn); });
///     ...
///     server.stop();   // stop accepting; running connections go on
///
/// A handler's std::system_error (peer reset, timeout, canceled) just ends that connection;
/// any other exception is printed to stderr. A full fd table makes the acceptor back off
/// briefly and retry; nothing is lost.
class tcp_server {
 public:
  /// The per-connection function; called concurrently on several threads.
  using handler = std::function<void(tcp_stream&)>;

  /// Binds on `ep` (port 0: one free port shared by all threads) on the calling fiber's
  /// runtime and starts accepting. Returns once every listener is bound; throws the bind error
  /// (e.g. "listen 127.0.0.1:80: Permission denied") otherwise.
  static tcp_server start(const endpoint& ep, handler h, const server_options& opts = {});
  /// The same on a given runtime; callable from any thread.
  static tcp_server start(runtime& rt, const endpoint& ep, handler h, const server_options& opts = {});

  /// A server that is not running (assign the result of start() to it).
  tcp_server() = default;
  /// Moves the running server; the moved-from handle is not running.
  tcp_server(tcp_server&&) noexcept = default;
  /// Stops and joins the server being replaced first.
  tcp_server& operator=(tcp_server&& other) noexcept;
  /// stop() + join().
  ~tcp_server();

  /// The bound address (with the real port when 0 was asked for).
  endpoint local_endpoint() const { return bound_; }
  /// Connections accepted so far, over all threads.
  std::size_t connections() const noexcept { return stats_->accepted.load(std::memory_order_relaxed); }
  /// Stops accepting (cancels the acceptor fibers). Connection fibers keep running.
  void stop();
  /// Waits until every acceptor fiber has ended.
  void join();

 private:
  struct stats {
    std::atomic<std::size_t> accepted{0};
  };
  endpoint bound_;
  std::vector<fiber> acceptors_;
  std::unique_ptr<stats> stats_ = std::make_unique<stats>();
};

}  // namespace fibers
