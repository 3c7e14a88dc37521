// tools/common/accept.hpp - the accepting side shared by the tools: one SO_REUSEPORT listener
// and acceptor fiber per I/O thread, and what an acceptor does when the process is out of file
// descriptors (pause, never spin; one log line per interval over all acceptors).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <system_error>
#include <vector>

#include <fibers/clock.hpp>
#include <fibers/endpoint.hpp>
#include <fibers/fiber.hpp>
#include <fibers/runtime.hpp>
#include <fibers/stream_listener.hpp>

namespace fibers_tools {

/// True for the errors of a process out of file descriptors or buffer memory (EMFILE, ENFILE,
/// ENOBUFS, ENOMEM): a local shortage, not a fault of the peer.
bool out_of_descriptors(const std::error_code& ec);

/// The "out of file descriptors" message of a program, printed to stderr at most once per
/// interval over every acceptor, with how many back-offs it covers. Thread-safe.
class emfile_log {
 public:
  /// `program` prefixes the line ("fibers-proxy").
  explicit emfile_log(std::string program,
                      std::chrono::nanoseconds interval = std::chrono::seconds(5))
      : program_(std::move(program)), interval_(interval) {}
  /// Counts one back-off of `pause` after `ec`; prints the line when the interval has passed.
  void note(const std::error_code& ec, std::chrono::nanoseconds pause);

 private:
  const std::string program_;
  const std::chrono::nanoseconds interval_;
  std::atomic<fibers::clock::rep> logged_{0};
  std::atomic<std::uint64_t> since_log_{0};
};

/// What an acceptor fiber runs: `loop(listener, thread)` until it returns or is canceled.
using accept_loop = std::function<void(fibers::stream_listener& listener, std::size_t thread)>;

/// Binds `ep` on every I/O thread of `rt` (SO_REUSEPORT; port 0: the first bind picks a free
/// port, the other threads share it) and runs `loop` in an acceptor fiber on each. Callable
/// from a fiber or a plain thread. Returns the acceptors (cancel and join them to stop) and
/// sets `bound`. Throws the bind error ("listen 127.0.0.1:80: Permission denied"); acceptors
/// already started are then canceled and joined.
std::vector<fibers::fiber> start_acceptors(fibers::runtime& rt, const fibers::endpoint& ep,
                                           const accept_loop& loop, fibers::endpoint& bound);

/// Cancels and joins `acceptors` (their listeners close) and clears the vector.
void stop_acceptors(std::vector<fibers::fiber>& acceptors);

}  // namespace fibers_tools
