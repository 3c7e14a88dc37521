// tools/fibers-proxy/forward.cpp - the two copy loops (or splice loops) and the connection's
// limits.
#include "forward.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <system_error>

#include <fibers/error.hpp>
#include <fibers/scope.hpp>
#include <fibers/tls.hpp>

namespace fibers_proxy {
namespace {

using fibers::clock;

// Each direction reads into its own buffer on its fiber's stack: no allocation per
// connection, and a 64-byte message touches one stack page. A direction whose read fills it
// (a stream) moves to a larger heap buffer for the rest of the connection: fewer, larger
// reads and writes.
constexpr std::size_t buffer_size = 16 * 1024;
constexpr std::size_t stream_buffer_size = 64 * 1024;

// What both directions of one connection share. Both run on the same I/O thread, one at a
// time, so plain fields suffice.
struct session {
  session(const config& c, thread_counters& k, fibers::scope& f) : cfg(c), counters(k), fibers(f) {}
  const config& cfg;
  thread_counters& counters;
  fibers::scope& fibers;  // the two direction fibers
  clock::time_point lifetime_end = clock::time_point::max();
  clock::time_point window_end = clock::time_point::max();
  std::uint64_t window_up = 0;    // client → upstream bytes in the current rate window
  std::uint64_t window_down = 0;  // upstream → client bytes in it
  std::uint64_t min_window_bytes = 0;
  clock::time_point last_progress;
  std::optional<error_kind> closed_for;

  // Ends the connection: both directions are canceled; the first reason counts.
  void close(error_kind why) {
    if (closed_for) return;
    closed_for = why;
    counters.count(why);
    fibers.cancel();
  }

  // Applies the lifetime and minimum-rate rules at `now`; false once the connection is closed.
  bool check_limits(clock::time_point now) {
    if (closed_for) return false;
    if (now >= lifetime_end) {
      close(error_kind::lifetime);
      return false;
    }
    if (now >= window_end) {
      // Trickling: the client sent something, too little, and got no answer meanwhile (an
      // upstream waiting for the rest of a request). A light protocol whose upstream answers
      // (keep-alive pings) is not trickling; a silent window is the idle rule's.
      if (window_up > 0 && window_up < min_window_bytes && window_down == 0) {
        close(error_kind::slow);
        return false;
      }
      window_up = window_down = 0;
      window_end += cfg.rate_window;
      if (window_end <= now) window_end = now + cfg.rate_window;
    }
    return true;
  }
};

bool is_reset(const std::error_code& ec) {
  return ec == std::errc::connection_reset || ec == std::errc::broken_pipe ||
         ec == std::errc::connection_aborted;
}

// A TLS peer that closes without close_notify: an end of stream for forwarding purposes.
bool is_truncation(const std::error_code& ec) {
  return ec == fibers::tls::errc::truncated || ec == fibers::errc::end_of_stream;
}

void fail(session& s, const std::error_code& ec) {
  if (ec == fibers::errc::canceled || ec == fibers::errc::closed) {
    if (!s.closed_for) {  // not our own close(): the runtime is shutting down
      s.closed_for = error_kind::drained;
      s.counters.count(error_kind::drained);
      s.fibers.cancel();
    }
    return;
  }
  s.close(is_reset(ec) ? error_kind::reset : ec == std::errc::timed_out ? error_kind::idle_timeout
                                                                         : error_kind::other);
}

// A read of one direction timed out at `read_by` (idle, lifetime or rate-window end): applies
// the limits; false once the connection is closed.
bool read_timed_out(session& s) {
  const auto at = clock::now();
  if (!s.check_limits(at)) return false;
  // Idle only if neither direction progressed meanwhile (a download with a silent client
  // is not idle).
  if (at - s.last_progress >= s.cfg.idle_timeout) {
    s.close(error_kind::idle_timeout);
    return false;
  }
  return true;
}

// A write of one direction failed with `ec`: closes the connection for the right reason.
void write_failed(session& s, const std::error_code& ec) {
  if (ec == std::errc::timed_out && clock::now() >= s.lifetime_end) {
    s.close(error_kind::lifetime);
  } else {
    fail(s, ec);
  }
}

// One direction: read from `from`, write to `to`, until end of stream or the connection ends.
void pump(session& s, pipe_end& from, pipe_end& to, std::atomic<std::uint64_t>& bytes,
          std::uint64_t& window_bytes) {
  unsigned char small[buffer_size];
  std::unique_ptr<unsigned char[]> large;
  fibers::mutable_buffer buf(small, sizeof small);
  const auto idle = s.cfg.idle_timeout;
  for (;;) {
    const auto now = clock::now();
    if (!s.check_limits(now)) return;
    std::error_code ec;
    const auto read_by = std::min({now + idle, s.lifetime_end, s.window_end});
    const std::size_t n = from.read_some(buf, ec,
                                         fibers::deadline::at(read_by));
    if (ec == std::errc::timed_out) {
      if (!read_timed_out(s)) return;
      continue;
    }
    if ((!ec && n == 0) || is_truncation(ec)) {
      // Half-close: pass the end of stream on; the other direction goes on.
      std::error_code sec;
      to.shutdown_write(sec, fibers::deadline::after(idle));
      return;
    }
    if (ec) {
      fail(s, ec);
      return;
    }
    const auto write_by = std::min(clock::now() + idle, s.lifetime_end);
    to.write_all(fibers::const_buffer(buf.data, n), ec, fibers::deadline::at(write_by));
    if (ec) {
      write_failed(s, ec);
      return;
    }
    s.last_progress = clock::now();
    window_bytes += n;
    if (n == buf.size && !large) {
      large = std::make_unique<unsigned char[]>(stream_buffer_size);
      buf = fibers::mutable_buffer(large.get(), stream_buffer_size);
    }
    thread_counters::add(bytes, n);
  }
}

// The pipe of one spliced direction.
struct splice_pipe {
  int rd = -1;
  int wr = -1;
  std::size_t capacity = 0;  // bytes it holds (64 KiB, less past the user's pipe-page quota)
  splice_pipe() {
    int p[2];
    if (::pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) return;
    rd = p[0];
    wr = p[1];
    const int size = ::fcntl(wr, F_GETPIPE_SZ);
    capacity = size > 0 ? static_cast<std::size_t>(size) : 4096;
  }
  splice_pipe(const splice_pipe&) = delete;
  splice_pipe& operator=(const splice_pipe&) = delete;
  ~splice_pipe() {
    if (rd >= 0) ::close(rd);
    if (wr >= 0) ::close(wr);
  }
};

// NONBLOCK: the pipe never waits (it is emptied before it is filled again) and the sockets are
// non-blocking; waits are the sockets' wait_readable/wait_writable, with the same deadlines as
// the copy loop's reads and writes.
constexpr unsigned splice_flags = SPLICE_F_NONBLOCK | SPLICE_F_MOVE;

std::error_code errno_code() { return {errno, std::generic_category()}; }

// One direction with splice(2): socket → pipe → socket, the bytes never copied to user space;
// the same rules as pump(). False if no pipe could be made (out of fds): copy instead.
bool pump_splice(session& s, fibers::tcp_stream& from, fibers::tcp_stream& to, std::atomic<std::uint64_t>& bytes,
                 std::uint64_t& window_bytes) {
  splice_pipe pipe;
  if (pipe.rd < 0) return false;
  const auto idle = s.cfg.idle_timeout;
  const int in = from.native_handle();
  const int out = to.native_handle();
  bool drained = false;  // the last splice in was short: wait (a poll) rather than try (EAGAIN)
  for (;;) {
    const auto now = clock::now();
    if (!s.check_limits(now)) return true;
    if (drained) {
      std::error_code ec;
      from.wait_readable(ec, fibers::deadline::at(std::min({now + idle, s.lifetime_end, s.window_end})));
      if (ec == std::errc::timed_out) {
        if (!read_timed_out(s)) return true;
        continue;
      }
      if (ec) {
        fail(s, ec);
        return true;
      }
      drained = false;
    }
    const ssize_t n = ::splice(in, nullptr, pipe.wr, nullptr, pipe.capacity, splice_flags);
    if (n < 0) {
      if (errno == EAGAIN) drained = true;
      else if (errno != EINTR) {
        fail(s, errno_code());
        return true;
      }
      continue;
    }
    if (n == 0) {  // end of stream: pass it on, as pump() does
      std::error_code sec;
      to.shutdown(fibers::tcp_stream::shutdown_type::write, sec);
      return true;
    }
    drained = static_cast<std::size_t>(n) < pipe.capacity;
    for (auto left = static_cast<std::size_t>(n); left > 0;) {
      const ssize_t m = ::splice(pipe.rd, nullptr, out, nullptr, left, splice_flags);
      if (m > 0) {
        left -= static_cast<std::size_t>(m);
        continue;
      }
      if (m < 0 && errno == EINTR) continue;
      if (m < 0 && errno == EAGAIN) {
        std::error_code ec;
        to.wait_writable(ec, fibers::deadline::at(std::min(clock::now() + idle, s.lifetime_end)));
        if (ec) {
          write_failed(s, ec);
          return true;
        }
        continue;
      }
      fail(s, m < 0 ? errno_code() : std::make_error_code(std::errc::io_error));
      return true;
    }
    s.last_progress = clock::now();
    window_bytes += static_cast<std::uint64_t>(n);
    thread_counters::add(bytes, static_cast<std::uint64_t>(n));
  }
}

}  // namespace

void forward(pipe_end& client, pipe_end& upstream, const config& cfg, thread_counters& counters) {
  fibers::scope directions;
  session s(cfg, counters, directions);
  const auto start = clock::now();
  s.last_progress = start;
  if (cfg.max_lifetime.count() > 0) s.lifetime_end = start + cfg.max_lifetime;
  if (cfg.min_rate > 0) {
    s.window_end = start + cfg.rate_window;
    s.min_window_bytes = static_cast<std::uint64_t>(
        cfg.min_rate * std::chrono::duration<double>(cfg.rate_window).count());
  }
  fibers::tcp_stream* client_tcp = cfg.splice ? client.tcp() : nullptr;
  fibers::tcp_stream* upstream_tcp = cfg.splice ? upstream.tcp() : nullptr;
  if (client_tcp != nullptr && upstream_tcp != nullptr) {
    directions.spawn("up", [&] {
      if (!pump_splice(s, *client_tcp, *upstream_tcp, counters.bytes_up, s.window_up)) {
        pump(s, client, upstream, counters.bytes_up, s.window_up);
      }
    });
    directions.spawn("down", [&] {
      if (!pump_splice(s, *upstream_tcp, *client_tcp, counters.bytes_down, s.window_down)) {
        pump(s, upstream, client, counters.bytes_down, s.window_down);
      }
    });
  } else {
    directions.spawn("up", [&] { pump(s, client, upstream, counters.bytes_up, s.window_up); });
    directions.spawn("down", [&] { pump(s, upstream, client, counters.bytes_down, s.window_down); });
  }
  try {
    directions.join();
  } catch (const fibers::canceled&) {
    // The owner itself was canceled (runtime shutdown): the children were canceled and
    // awaited by join(); nothing more to do.
  }
}

}  // namespace fibers_proxy
