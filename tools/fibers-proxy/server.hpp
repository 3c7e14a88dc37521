// tools/fibers-proxy/server.hpp - the accepting side: one SO_REUSEPORT listener and acceptor
// fiber per listen address per I/O thread, the connection limit, the back-off when the
// process is out of file descriptors, and each client connection's life.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include <fibers/endpoint.hpp>
#include <fibers/fiber.hpp>
#include <fibers/runtime.hpp>
#include <fibers/tls.hpp>

#include "config.hpp"
#include "stats.hpp"
#include "upstream.hpp"

namespace fibers_proxy {

/// The proxy's acceptors. Start it from a fiber of the runtime; stop() before the runtime
/// ends. Connections it accepted run on as detached fibers (counted in the stats) until they
/// end or the runtime cancels them.
class proxy_server {
 public:
  /// Binds every listen address on every I/O thread (port 0: one free port per address, shared
  /// by the threads) and starts accepting. Throws the bind error ("listen 127.0.0.1:80:
  /// Permission denied") or a tls::error for a bad certificate.
  proxy_server(fibers::runtime& rt, const config& cfg, proxy_stats& stats);
  ~proxy_server();

  /// The DNS names of each --tls-cert, in order (empty without TLS termination).
  std::vector<std::vector<std::string>> certificate_names() const;
  /// The bound addresses, in --listen order.
  const std::vector<fibers::endpoint>& bound() const { return bound_; }
  /// Puts `cfg` in force for connections accepted from now on (upstreams, limits, timeouts,
  /// certificates); connections in flight keep the configuration they started with. The
  /// listen addresses and thread count cannot change. Throws (keeping the old configuration)
  /// when a certificate, key or CA cannot be loaded.
  void reload(const config& cfg);
  /// Stops accepting: the listeners close; running connections go on.
  void stop();

  struct shared;  // what acceptors and connections share (outlives this object)

 private:
  std::shared_ptr<shared> shared_;
  std::vector<fibers::endpoint> bound_;
  std::vector<fibers::fiber> acceptors_;
};

}  // namespace fibers_proxy
