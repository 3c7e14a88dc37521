// tools/fibers-echo/load.cpp - the load client. Connections are spread round-robin over the
// client runtime's I/O threads; each thread keeps its own counters and histogram (its fibers
// run one at a time, so no locking), merged when every fiber has ended. A few live counters
// per thread are atomics, for the progress line.
//
// Paced runs (--rate) are open loop: message k of connection i has an intended send time on
// a fixed schedule, start + (k * conns + i) / rate, and its latency is measured from that
// time, not from when it was actually sent. A server stall that holds up the next sends
// therefore shows in the latency of every message it delayed (no coordinated omission), and
// a send that leaves more than late_threshold after its time is counted late, never skipped.
#include "load.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
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

#include "certificates.hpp"
#include "pattern.hpp"
#include "pipe_end.hpp"
#include "post_future.hpp"
#include "signals.hpp"

namespace fibers_echo {
namespace {

using fibers::clock;
using fibers_tools::pipe_end;

// How often the orchestrating thread looks for a stop signal while the load runs.
constexpr auto signal_poll = std::chrono::milliseconds(50);
constexpr auto progress_every = std::chrono::seconds(1);
// Connections being opened at once per I/O thread (a burst of thousands of SYNs and TLS
// handshakes would only overflow the server's backlog).
constexpr std::ptrdiff_t connect_concurrency = 64;
// TLS handshakes (certificate verification) are stack-hungry.
constexpr std::size_t tls_stack = 256 * 1024;

// The timeline every connection fiber follows, shared read-only (plus the stop flag and the
// "first error of this kind already reported" flags).
struct plan {
  const load_options* opts = nullptr;
  clock::time_point start;         // the schedule's origin (paced)
  clock::time_point measure_from;  // start + warmup
  clock::time_point end;
  std::atomic<bool> stop{false};
  mutable std::array<std::atomic<bool>, load_error_kinds> reported{};

  bool paced() const { return opts->rate > 0; }
  // Intended send time of message k of connection id.
  clock::time_point scheduled(std::uint64_t id, std::uint64_t k) const {
    const double at = (static_cast<double>(k) * static_cast<double>(opts->conns) +
                       static_cast<double>(id)) / opts->rate;
    return start + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(at));
  }
  bool measured(clock::time_point t) const { return t >= measure_from && t < end; }
  // How many messages of connection id, from message k on, are due inside the measured
  // window: those a paced run that has reached its end leaves unsent.
  std::uint64_t due_from(std::uint64_t id, std::uint64_t k) const {
    auto due_before = [&](clock::time_point t) -> std::uint64_t {  // messages due before t
      const double x = std::chrono::duration<double>(t - start).count() * opts->rate -
                       static_cast<double>(id);
      return x <= 0 ? 0 : static_cast<std::uint64_t>(std::ceil(x / static_cast<double>(opts->conns)));
    };
    const std::uint64_t first = std::max(k, due_before(measure_from)), last = due_before(end);
    return last > first ? last - first : 0;
  }
};

// Live counters of one thread (every round-trip, warm-up included), for the progress line.
struct alignas(64) live_counters {
  std::atomic<std::uint64_t> round_trips{0}, bytes{0}, errors{0}, late{0};
  static void add(std::atomic<std::uint64_t>& c, std::uint64_t n) noexcept {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
};

struct connection {
  std::uint64_t id = 0;
  pipe_end end;
  bool open = false;
};

// One I/O thread's connections and what they measured; touched only by that thread's fibers
// until the thread's driver has finished (live: any thread reads).
struct thread_state {
  std::vector<connection> conns;
  live_counters live;
  std::uint64_t opened = 0, round_trips = 0, bytes = 0, late = 0, unsent = 0, max_lag_ns = 0;
  std::array<std::uint64_t, load_error_kinds> errors{};
  latency_histogram latency;
  std::string first_error;
};

bool is_shutdown(const std::error_code& ec) {
  return ec == fibers::errc::canceled || ec == fibers::errc::closed;
}

bool is_reset(const std::error_code& ec) {
  return ec == std::errc::connection_reset || ec == std::errc::broken_pipe ||
         ec == std::errc::connection_aborted;
}

load_error classify(const std::error_code& ec) {
  if (ec == std::errc::timed_out) return load_error::timeout;
  if (is_reset(ec)) return load_error::reset;
  if (ec == fibers::errc::end_of_stream || ec == fibers::tls::errc::truncated) {
    return load_error::eof;
  }
  return load_error::other;
}

// Counts an error; the first of each kind (over all threads) is printed.
void fail(const plan& p, thread_state& st, std::uint64_t id, load_error kind,
          const std::string& what) {
  ++st.errors[static_cast<std::size_t>(kind)];
  live_counters::add(st.live.errors, 1);
  if (st.first_error.empty()) st.first_error = what;
  if (!p.reported[static_cast<std::size_t>(kind)].exchange(true, std::memory_order_relaxed)) {
    fmt::print(stderr, "fibers-echo: connection {}: {} (first '{}' error; later ones are counted)\n",
               id, what, name(kind));
  }
}

std::string target_name(const load_options& o) {
  if (o.target) return o.target->to_string();
  return fmt::format("{}:{}", o.host, o.port);
}

// Opens connection `c` (TCP, then TLS when asked); counts a failure.
void open_connection(connection& c, const plan& p, const fibers::tls::context* tls,
                     thread_state& st) {
  const load_options& o = *p.opts;
  const auto dl = fibers::deadline::after(o.timeout);
  std::error_code ec;
  fibers::tcp_stream sock = o.target ? fibers::tcp_stream::connect(*o.target, ec, dl)
                                     : fibers::tcp_stream::connect(o.host, o.port, ec, dl);
  if (ec) {
    if (is_shutdown(ec)) return;
    fail(p, st, c.id, ec == std::errc::timed_out ? load_error::timeout : load_error::connect,
         fmt::format("connect {}: {}", target_name(o), ec.message()));
    return;
  }
  sock.set_nodelay(true);
  if (!tls) {
    c.end = pipe_end(std::move(sock));
    c.open = true;
    ++st.opened;
    return;
  }
  fibers::tls::stream t(std::move(sock), *tls, o.host);
  t.handshake(ec, dl);
  if (ec) {
    if (is_shutdown(ec)) return;
    const load_error kind = ec == std::errc::timed_out ? load_error::timeout
                            : is_reset(ec)             ? load_error::reset
                                                       : load_error::tls;
    const std::string detail = t.last_error_detail();
    fail(p, st, c.id, kind,
         fmt::format("tls handshake with {}: {}", target_name(o),
                     detail.empty() ? ec.message() : detail));
    return;
  }
  c.end = pipe_end(std::move(t));
  c.open = true;
  ++st.opened;
}

// Opens this thread's share of the connections, a bounded number at a time.
void connect_all(const plan& p, std::size_t thread, const fibers::tls::context* tls,
                 thread_state& st) {
  const load_options& o = *p.opts;
  for (std::size_t id = thread; id < o.conns; id += o.threads) st.conns.push_back({id, {}, false});
  fibers::semaphore slots(connect_concurrency);
  fibers::scope openers;
  for (auto& c : st.conns) {
    slots.acquire();
    openers.spawn("connect", [&, tls] {
      open_connection(c, p, tls, st);
      slots.release();
    });
  }
  openers.join();
}

void report_corruption(const plan& p, thread_state& st, std::uint64_t id, std::uint64_t k,
                       std::span<const unsigned char> sent, std::span<const unsigned char> got) {
  auto at = std::mismatch(sent.begin(), sent.end(), got.begin()).first - sent.begin();
  fail(p, st, id, load_error::corrupt,
       fmt::format("round-trip {}: byte {} of {} is 0x{:02x}, sent 0x{:02x}", k, at, sent.size(),
                   got[static_cast<std::size_t>(at)], sent[static_cast<std::size_t>(at)]));
}

// A message was sent at `sent_at`, intended for `intended`: counts it late if it is.
void note_send(const plan& p, thread_state& st, clock::time_point intended,
               clock::time_point sent_at) {
  if (!p.paced()) return;
  const auto lag = sent_at - intended;
  if (lag <= late_threshold) return;
  live_counters::add(st.live.late, 1);
  if (!p.measured(intended)) return;
  ++st.late;
  st.max_lag_ns = std::max(st.max_lag_ns, static_cast<std::uint64_t>(lag.count()));
}

// The echo of a message intended for `intended` arrived at `finish`, verified.
void note_echo(const plan& p, thread_state& st, clock::time_point intended,
               clock::time_point finish) {
  const std::size_t size = p.opts->size;
  live_counters::add(st.live.round_trips, 1);
  live_counters::add(st.live.bytes, size);
  if (!p.measured(intended)) return;
  ++st.round_trips;
  st.bytes += size;
  st.latency.record(static_cast<std::uint64_t>(std::max<clock::rep>(0, (finish - intended).count())));
}

// When message k of connection id is due (paced) or now (closed loop); nullopt once the run
// is over (the end of the window, or a stop signal).
std::optional<clock::time_point> next_send(const plan& p, std::uint64_t id, std::uint64_t k) {
  if (p.stop.load(std::memory_order_relaxed)) return std::nullopt;
  const auto t = p.paced() ? p.scheduled(id, k) : clock::now();
  if (t >= p.end) return std::nullopt;
  return t;
}

// A paced run whose sender is so far behind that the window has ended in real time stops
// there (the run does not stretch without bound); the messages still due are counted unsent.
bool past_end(const plan& p, thread_state& st, std::uint64_t id, std::uint64_t k) {
  if (!p.paced() || clock::now() < p.end) return false;
  st.unsent += p.due_from(id, k);
  return true;
}

// Waits until `t` (paced runs); false when canceled.
bool wait_until(clock::time_point t) {
  if (clock::now() >= t) return true;
  std::error_code ec;
  fibers::this_fiber::sleep_until(t, ec);
  return !ec;
}

// --pipeline 1: one fiber sends a message, reads its echo, checks it; repeats. An error or
// corruption ends the connection (its stream is no longer trustworthy).
void run_serial(connection& c, const plan& p, thread_state& st) {
  const std::size_t size = p.opts->size;
  std::vector<unsigned char> sent(size), got(size);
  for (std::uint64_t k = 0;; ++k) {
    auto intended = next_send(p, c.id, k);
    if (!intended || past_end(p, st, c.id, k) || !wait_until(*intended)) return;
    const auto sent_at = clock::now();
    if (!p.paced()) intended = sent_at;
    note_send(p, st, *intended, sent_at);
    fill_pattern(sent, c.id, k);
    std::error_code ec;
    c.end.write_all(fibers::const_buffer(sent), ec, fibers::deadline::after(p.opts->timeout));
    if (!ec) c.end.read_exact(fibers::mutable_buffer(got), ec, fibers::deadline::after(p.opts->timeout));
    if (ec) {
      if (!is_shutdown(ec)) fail(p, st, c.id, classify(ec), fmt::format("round-trip {}: {}", k, ec.message()));
      return;
    }
    const auto finish = clock::now();
    if (std::memcmp(sent.data(), got.data(), size) != 0) {
      report_corruption(p, st, c.id, k, sent, got);
      return;
    }
    note_echo(p, st, *intended, finish);
  }
}

// --pipeline N > 1: a writer fiber sends (when due, and while fewer than N are in flight), a
// reader fiber reads the echoes back in order. A failure on either side ends both.
void run_pipelined(connection& c, const plan& p, thread_state& st) {
  const std::size_t n = p.opts->pipeline, size = p.opts->size;
  const auto timeout = p.opts->timeout;
  fibers::semaphore slots(static_cast<std::ptrdiff_t>(n));  // free places in the window
  fibers::semaphore ready(0);  // one permit per message sent, plus one at the end
  std::vector<clock::time_point> intended(n);  // of message k at k % n while it is in flight
  std::uint64_t sent_count = 0;
  bool writer_done = false;
  fibers::scope both;
  both.spawn("writer", [&] {
    try {
      std::vector<unsigned char> msg(size);
      for (std::uint64_t k = 0;; ++k) {
        auto t = next_send(p, c.id, k);
        if (!t) break;
        slots.acquire();  // a full window makes a paced send late, not skipped
        if (past_end(p, st, c.id, k)) break;
        if (!p.paced()) {
          t = next_send(p, c.id, k);
          if (!t) break;
        } else if (!wait_until(*t)) {
          break;
        }
        const auto sent_at = clock::now();
        note_send(p, st, *t, sent_at);
        intended[k % n] = *t;
        fill_pattern(msg, c.id, k);
        std::error_code ec;
        c.end.write_all(fibers::const_buffer(msg), ec, fibers::deadline::after(timeout));
        if (ec) {
          if (!is_shutdown(ec)) fail(p, st, c.id, classify(ec), fmt::format("write {}: {}", k, ec.message()));
          both.cancel();
          return;
        }
        ++sent_count;
        ready.release();
      }
      writer_done = true;
      ready.release();
    } catch (const fibers::canceled&) {
      // the reader failed
    }
  });
  both.spawn("reader", [&] {
    try {
      std::vector<unsigned char> want(size), got(size);
      for (std::uint64_t k = 0;; ++k) {
        ready.acquire();
        if (writer_done && k == sent_count) return;
        std::error_code ec;
        c.end.read_exact(fibers::mutable_buffer(got), ec, fibers::deadline::after(timeout));
        if (ec) {
          if (!is_shutdown(ec)) fail(p, st, c.id, classify(ec), fmt::format("read {}: {}", k, ec.message()));
          both.cancel();
          return;
        }
        const auto finish = clock::now();
        fill_pattern(want, c.id, k);
        if (std::memcmp(want.data(), got.data(), size) != 0) {
          report_corruption(p, st, c.id, k, want, got);
          both.cancel();
          return;
        }
        note_echo(p, st, intended[k % n], finish);
        slots.release();
      }
    } catch (const fibers::canceled&) {
      // the writer failed
    }
  });
  both.join();
}

// Runs this thread's open connections to the end and closes them (on their own thread).
void drive(const plan& p, thread_state& st) {
  fibers::scope running;
  for (auto& c : st.conns) {
    if (!c.open) continue;
    running.spawn(fmt::format("load-{}", c.id), [&p, &st, &c] {
      if (p.opts->pipeline > 1) {
        run_pipelined(c, p, st);
      } else {
        run_serial(c, p, st);
      }
    });
  }
  running.join();
  st.conns.clear();
}

// The progress line: what happened since the last one.
struct progress {
  clock::time_point last_at;
  std::uint64_t rt = 0, bytes = 0, errors = 0, late = 0;

  void print(const plan& p, const std::vector<thread_state>& states, clock::time_point now) {
    std::uint64_t r = 0, b = 0, e = 0, l = 0;
    for (const auto& st : states) {
      r += st.live.round_trips.load(std::memory_order_relaxed);
      b += st.live.bytes.load(std::memory_order_relaxed);
      e += st.live.errors.load(std::memory_order_relaxed);
      l += st.live.late.load(std::memory_order_relaxed);
    }
    const double secs = std::chrono::duration<double>(now - last_at).count();
    if (secs <= 0) return;
    const double elapsed = std::chrono::duration<double>(now - p.start).count();
    fmt::print(stderr, "fibers-echo: {:5.1f} s{} {:.0f} rt/s {:.2f} MB/s errors={}{}\n", elapsed,
               now < p.measure_from ? " (warm-up)" : "", static_cast<double>(r - rt) / secs,
               static_cast<double>(b - bytes) / secs / 1e6, e,
               p.paced() ? fmt::format(" late={}", l) : std::string());
    last_at = now;
    rt = r;
    bytes = b;
    errors = e;
    late = l;
  }
};

// Waits for every future; a stop signal meanwhile sets `p.stop`; prints the progress line.
// Returns when the signal came.
std::optional<clock::time_point> wait_all(std::vector<std::future<void>>& done, plan& p,
                                          const sigset_t* stop,
                                          const std::vector<thread_state>& states) {
  std::optional<clock::time_point> stopped_at;
  progress prog{p.start};
  auto next_line = p.start + progress_every;
  for (auto& f : done) {
    while (f.wait_for(std::chrono::milliseconds(0)) != std::future_status::ready) {
      if (p.opts->progress && clock::now() >= next_line) {
        prog.print(p, states, clock::now());
        next_line += progress_every;
      }
      if (!stop || stopped_at) {
        f.wait_for(signal_poll);
      } else if (wait_signal(*stop, signal_poll) != 0) {
        stopped_at = clock::now();
        p.stop = true;
      }
    }
  }
  for (auto& f : done) f.get();  // rethrows what a driver threw
  return stopped_at;
}

fibers::tls::context client_context(const load_options& o) {
  if (!o.tls_ca.empty()) fibers_tools::require_readable("--tls-ca", o.tls_ca);
  fibers::tls::client_options co;
  co.ca_file = o.tls_ca;
  co.insecure_skip_verify = o.insecure;
  return fibers::tls::context::client(co);  // throws tls::error naming a bad CA file
}

}  // namespace

load_result run_load(const load_options& opts, const sigset_t* stop) {
  load_result result;
  result.target = target_name(opts);
  result.tls = opts.tls;
  result.conns = opts.conns;
  result.size = opts.size;
  result.pipeline = opts.pipeline;
  result.rate = opts.rate;
  fibers::tls::context tls;
  if (opts.tls) tls = client_context(opts);
  plan p;
  p.opts = &opts;
  std::vector<thread_state> states(opts.threads);  // outlive the runtime
  fibers::runtime_options ro;
  ro.io_threads = opts.threads;
  ro.sockets = opts.sockets;
  if (opts.tls) ro.stack_size = tls_stack;
  fibers::runtime rt(ro);
  const fibers::tls::context* tls_ptr = opts.tls ? &tls : nullptr;

  // Phase 1: every thread opens its share of the connections.
  std::vector<std::future<void>> done;
  for (std::size_t t = 0; t < opts.threads; ++t) {
    done.push_back(post_future(rt, t, [&p, t, tls_ptr, &st = states[t]] {
      connect_all(p, t, tls_ptr, st);
    }));
  }
  for (auto& f : done) f.get();
  std::uint64_t opened = 0;
  for (const auto& st : states) opened += st.opened;

  // Phase 2: all connected, start the clock (nothing to run when no connection opened).
  p.start = clock::now();
  p.measure_from = p.start + (opened > 0 ? opts.warmup : clock::duration{});
  p.end = p.measure_from + (opened > 0 ? opts.duration : clock::duration{});
  done.clear();
  for (std::size_t t = 0; t < opts.threads; ++t) {
    done.push_back(post_future(rt, t, [&p, &st = states[t]] { drive(p, st); }));
  }
  auto stopped_at = wait_all(done, p, stop, states);

  result.stopped = stopped_at.has_value();
  auto window_end = stopped_at ? std::min(*stopped_at, p.end) : p.end;
  result.seconds =
      std::max(0.0, std::chrono::duration<double>(window_end - p.measure_from).count());
  for (auto& st : states) {
    result.connected += st.opened;
    result.round_trips += st.round_trips;
    result.bytes += st.bytes;
    result.late += st.late;
    result.unsent += st.unsent;
    result.max_lag_ns = std::max(result.max_lag_ns, st.max_lag_ns);
    for (std::size_t k = 0; k < load_error_kinds; ++k) result.errors[k] += st.errors[k];
    result.latency.merge(st.latency);
    if (result.first_error.empty()) result.first_error = st.first_error;
  }
  return result;
}

int run_load_command(const load_options& opts, bool json, const sigset_t& stop) {
  load_result r = run_load(opts, &stop);
  if (json) {
    fmt::print("{}\n", r.json());
  } else {
    fmt::print("{}\nfibers-echo: {}\n", r.line(), r.details());
  }
  if (r.connected == 0) {
    fmt::print(stderr, "fibers-echo: no connection could be opened: {}\n", r.first_error);
  }
  return r.ok() ? 0 : 1;
}

}  // namespace fibers_echo
