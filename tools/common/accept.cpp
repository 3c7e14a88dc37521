// tools/common/accept.cpp - acceptors on every I/O thread, and the EMFILE message.
#include "accept.hpp"

#include <cstdio>
#include <exception>
#include <utility>

#include <fmt/core.h>

#include <fibers/future.hpp>

namespace fibers_tools {

bool out_of_descriptors(const std::error_code& ec) {
  return ec == std::errc::too_many_files_open || ec == std::errc::too_many_files_open_in_system ||
         ec == std::errc::no_buffer_space || ec == std::errc::not_enough_memory;
}

void emfile_log::note(const std::error_code& ec, std::chrono::nanoseconds pause) {
  since_log_.fetch_add(1, std::memory_order_relaxed);
  const auto now = fibers::clock::now().time_since_epoch().count();
  auto last = logged_.load(std::memory_order_relaxed);
  const auto every = std::chrono::duration_cast<fibers::clock::duration>(interval_).count();
  if (last != 0 && now - last < every) return;
  // One acceptor wins the interval; the others only count.
  if (!logged_.compare_exchange_strong(last, now, std::memory_order_relaxed)) return;
  fmt::print(stderr,
             "{}: accept: {}; pausing accepts {} ms at a time ({} pauses since the last "
             "message)\n",
             program_, ec.message(),
             std::chrono::duration_cast<std::chrono::milliseconds>(pause).count(),
             since_log_.exchange(0, std::memory_order_relaxed));
}

std::vector<fibers::fiber> start_acceptors(fibers::runtime& rt, const fibers::endpoint& ep,
                                           const accept_loop& loop, fibers::endpoint& bound) {
  fibers::listen_options lo;
  lo.reuse_port = true;
  std::vector<fibers::fiber> acceptors;
  fibers::endpoint where = ep;
  for (std::size_t t = 0; t < rt.io_threads(); ++t) {
    fibers::promise<fibers::endpoint> ready;
    auto result = ready.get_future();
    acceptors.push_back(rt.spawn_on(
        t, "acceptor", [ready = std::move(ready), where, lo, loop, t]() mutable {
          fibers::stream_listener listener;
          try {
            listener = fibers::stream_listener::bind(where, lo);
            ready.set_value(listener.local_endpoint());
          } catch (...) {
            ready.set_exception(std::current_exception());
            return;
          }
          loop(listener, t);
        }));
    try {
      where = result.get();  // the first bind fixes the port for the other threads
    } catch (...) {
      stop_acceptors(acceptors);
      throw;
    }
  }
  bound = where;
  return acceptors;
}

void stop_acceptors(std::vector<fibers::fiber>& acceptors) {
  for (auto& a : acceptors) a.cancel();
  for (auto& a : acceptors) a.join();
  acceptors.clear();
}

}  // namespace fibers_tools
