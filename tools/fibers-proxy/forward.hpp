// tools/fibers-proxy/forward.hpp - moving bytes between a client and its upstream: one fiber
// per direction, each with its own reused buffer, under the connection's limits.
#pragma once

#include "config.hpp"
#include "pipe_end.hpp"
#include "stats.hpp"

namespace fibers_proxy {

using fibers_tools::pipe_end;

/// Copies client → upstream and upstream → client until both directions have ended, then
/// returns (the caller closes both). The rules:
/// - half-close: end of stream one way shuts down the write side of the other end (TCP
///   shutdown(SHUT_WR), TLS close_notify) and the other direction goes on;
/// - idle: a read or write that makes no progress for cfg.idle_timeout, while the other
///   direction made none either, closes the connection; a write stalled that long (a client
///   that does not read) closes it too;
/// - lifetime: the connection is closed cfg.max_lifetime after it started;
/// - minimum rate: at the end of every cfg.rate_window in which the client sent some bytes
///   but fewer than cfg.min_rate * window, and the upstream sent none, the connection is
///   closed, so a trickle of one byte every few seconds towards an upstream that waits for
///   the rest (slowloris) does not keep it open as it would an idle timer;
/// - a reset or other error on either end closes both.
/// Counts bytes and the reason a connection was closed early in `counters`. Runtime shutdown
/// (cancellation) ends it early, counted as `drained`.
void forward(pipe_end& client, pipe_end& upstream, const config& cfg, thread_counters& counters);

}  // namespace fibers_proxy
