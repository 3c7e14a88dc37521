// tools/fibers-echo/load.cpp - the load client. Connections are spread round-robin over the
// client runtime's I/O threads; each thread keeps its own counters and histogram (its fibers
// run one at a time, so no locking), merged when every fiber has ended.
#include "load.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <future>
#include <memory>
#include <optional>
#include <span>
#include <system_error>
#include <utility>
#include <vector>

#include <fmt/core.h>

#include <fibers/fibers.hpp>

#include "pattern.hpp"
#include "post_future.hpp"
#include "signals.hpp"

namespace fibers_echo {
namespace {

// How often the orchestrating thread looks for a stop signal while the load runs.
constexpr auto signal_poll = std::chrono::milliseconds(50);

// The timeline every connection fiber follows, shared read-only (plus the stop flag).
struct plan {
  std::size_t size = 0;
  fibers::clock::time_point measure_from;
  fibers::clock::time_point end;
  std::atomic<bool> stop{false};
};

// One I/O thread's connections and what they measured; touched only by that thread's fibers
// until the thread's driver has finished.
struct thread_state {
  std::vector<std::pair<std::uint64_t, fibers::tcp_stream>> conns;  // (connection id, socket)
  std::string connect_error;
  std::uint64_t round_trips = 0, bytes = 0, errors = 0, corrupt = 0;
  latency_histogram latency;
};

bool is_shutdown(const std::error_code& ec) {
  return ec == fibers::errc::canceled || ec == fibers::errc::closed;
}

void connect_all(const load_options& opts, std::size_t thread, thread_state& st) {
  for (std::size_t id = thread; id < opts.conns; id += opts.threads) {
    std::error_code ec;
    auto sock = fibers::tcp_stream::connect(opts.target, ec, fibers::deadline(opts.timeout));
    if (ec) {
      st.connect_error = fmt::format("connect {}: {}", opts.target.to_string(), ec.message());
      return;
    }
    sock.set_nodelay(true);
    sock.set_timeout(opts.timeout);  // every later write/read gets its own deadline
    st.conns.emplace_back(id, std::move(sock));
  }
}

void report_corruption(std::uint64_t id, std::uint64_t iteration,
                       std::span<const unsigned char> sent, std::span<const unsigned char> got) {
  auto at = std::mismatch(sent.begin(), sent.end(), got.begin()).first - sent.begin();
  fmt::print(stderr,
             "fibers-echo: connection {} round-trip {}: byte {} of {} is 0x{:02x}, sent 0x{:02x}\n",
             id, iteration, at, sent.size(), got[static_cast<std::size_t>(at)],
             sent[static_cast<std::size_t>(at)]);
}

// One connection: send a fresh pattern, read the echo back, check it, time it; repeat until
// the end of the window. An error or corruption ends the connection (its stream is no longer
// trustworthy).
void client_loop(std::uint64_t id, fibers::tcp_stream& sock, const plan& p, thread_state& st) {
  std::vector<unsigned char> sent(p.size), got(p.size);
  for (std::uint64_t iteration = 0; !p.stop.load(std::memory_order_relaxed); ++iteration) {
    auto start = fibers::clock::now();
    if (start >= p.end) return;
    fill_pattern(sent, id, iteration);
    std::error_code ec;
    sock.write_all(fibers::const_buffer(sent), ec);
    if (!ec) sock.read_exact(fibers::mutable_buffer(got), ec);
    if (ec) {
      if (is_shutdown(ec)) return;
      ++st.errors;
      fmt::print(stderr, "fibers-echo: connection {} round-trip {}: {}\n", id, iteration,
                 ec.message());
      return;
    }
    auto finish = fibers::clock::now();
    if (std::memcmp(sent.data(), got.data(), p.size) != 0) {
      ++st.corrupt;
      report_corruption(id, iteration, sent, got);
      return;
    }
    if (start >= p.measure_from) {
      ++st.round_trips;
      st.bytes += p.size;
      st.latency.record(static_cast<std::uint64_t>((finish - start).count()));
    }
  }
}

// Runs this thread's connections to the end and closes them (on their own thread).
void drive(const plan& p, thread_state& st) {
  std::vector<fibers::fiber> running;
  running.reserve(st.conns.size());
  for (auto& [id, sock] : st.conns) {
    running.push_back(fibers::spawn(fmt::format("load-{}", id), [&p, &st, id = id, &sock = sock] {
      client_loop(id, sock, p, st);
    }));
  }
  for (auto& f : running) f.join();
  st.conns.clear();
}

// Waits for every future; a stop signal meanwhile sets `p.stop`. Returns when it came.
std::optional<fibers::clock::time_point> wait_all(std::vector<std::future<void>>& done, plan& p,
                                                  const sigset_t* stop) {
  std::optional<fibers::clock::time_point> stopped_at;
  for (auto& f : done) {
    while (f.wait_for(std::chrono::milliseconds(0)) != std::future_status::ready) {
      if (!stop || stopped_at) {
        f.wait();
      } else if (wait_signal(*stop, signal_poll) != 0) {
        stopped_at = fibers::clock::now();
        p.stop = true;
      }
    }
  }
  for (auto& f : done) f.get();  // rethrows what a driver threw
  return stopped_at;
}

}  // namespace

double load_result::round_trips_per_sec() const {
  return seconds > 0 ? static_cast<double>(round_trips) / seconds : 0;
}

double load_result::megabytes_per_sec() const {
  return seconds > 0 ? static_cast<double>(bytes) / seconds / 1e6 : 0;
}

std::string load_result::line() const {
  return fmt::format(
      "rt/s={:.0f} MB/s={:.1f} p50_us={:.1f} p99_us={:.1f} errors={} corrupt={} "
      "conns={} size={}",
      round_trips_per_sec(), megabytes_per_sec(), static_cast<double>(latency.quantile(0.50)) / 1e3,
      static_cast<double>(latency.quantile(0.99)) / 1e3, errors, corrupt, conns, size);
}

load_result run_load(const load_options& opts, const sigset_t* stop) {
  load_result result;
  result.conns = opts.conns;
  result.size = opts.size;
  plan p;
  p.size = opts.size;
  std::vector<thread_state> states(opts.threads);  // outlive the runtime
  fibers::runtime rt(opts.threads);

  // Phase 1: every thread opens its share of the connections.
  std::vector<std::future<void>> done;
  for (std::size_t t = 0; t < opts.threads; ++t) {
    done.push_back(post_future(rt, t, [&opts, t, &st = states[t]] { connect_all(opts, t, st); }));
  }
  for (auto& f : done) f.get();
  for (auto& st : states) {
    if (!st.connect_error.empty() && result.connect_error.empty()) {
      result.connect_error = st.connect_error;
    }
  }

  // Phase 2: all connected, start the clock (or, after a failed connect, just close).
  auto now = fibers::clock::now();
  p.measure_from = now + opts.warmup;
  p.end = p.measure_from + opts.duration;
  if (!result.connect_error.empty()) p.stop = true;
  done.clear();
  for (std::size_t t = 0; t < opts.threads; ++t) {
    done.push_back(post_future(rt, t, [&p, &st = states[t]] { drive(p, st); }));
  }
  auto stopped_at = wait_all(done, p, stop);

  auto window_end = stopped_at ? std::min(*stopped_at, p.end) : p.end;
  result.seconds =
      std::max(0.0, std::chrono::duration<double>(window_end - p.measure_from).count());
  for (auto& st : states) {
    result.round_trips += st.round_trips;
    result.bytes += st.bytes;
    result.errors += st.errors;
    result.corrupt += st.corrupt;
    result.latency.merge(st.latency);
  }
  return result;
}

int run_load_command(const load_options& opts, const sigset_t& stop) {
  load_result r = run_load(opts, &stop);
  if (!r.connect_error.empty()) {
    fmt::print(stderr, "fibers-echo: {}\n", r.connect_error);
    return 1;
  }
  fmt::print("{}\n", r.line());
  return r.ok() ? 0 : 1;
}

}  // namespace fibers_echo
