// tools/fibers-echo/load_result.cpp - what a load run measured, as the human summary and as
// one JSON object.
#include "load.hpp"

#include <string>
#include <string_view>

#include <fmt/core.h>

namespace fibers_echo {
namespace {

std::string json_escape(std::string_view in) {
  std::string out;
  for (char ch : in) {
    if (ch == '"' || ch == '\\') out += '\\';
    if (static_cast<unsigned char>(ch) < 0x20) {
      out += fmt::format("\\u{:04x}", static_cast<unsigned>(ch));
      continue;
    }
    out += ch;
  }
  return out;
}

}  // namespace

const char* name(load_error k) noexcept {
  switch (k) {
    case load_error::connect: return "connect";
    case load_error::tls: return "tls";
    case load_error::timeout: return "timeout";
    case load_error::reset: return "reset";
    case load_error::eof: return "eof";
    case load_error::corrupt: return "corrupt";
    case load_error::other: return "other";
    case load_error::count_: break;
  }
  return "?";
}

std::uint64_t load_result::error_count() const {
  std::uint64_t n = 0;
  for (auto e : errors) n += e;
  return n;
}

double load_result::round_trips_per_sec() const {
  return seconds > 0 ? static_cast<double>(round_trips) / seconds : 0;
}

double load_result::megabytes_per_sec() const {
  return seconds > 0 ? static_cast<double>(bytes) / seconds / 1e6 : 0;
}

std::string load_result::line() const {
  return fmt::format(
      "rt/s={:.0f} MB/s={:.1f} p50_us={:.1f} p99_us={:.1f} p999_us={:.1f} max_us={:.1f} "
      "errors={} corrupt={} conns={} size={}",
      round_trips_per_sec(), megabytes_per_sec(), latency.quantile_us(0.50),
      latency.quantile_us(0.99), latency.quantile_us(0.999),
      static_cast<double>(latency.max()) / 1e3, error_count(), of(load_error::corrupt), conns,
      size);
}

std::string load_result::details() const {
  std::string s = fmt::format("{:.1f} s measured{}, {} of {} connections{} to {}, {} B messages, "
                              "pipeline {}, ",
                              seconds, stopped ? " (stopped by a signal)" : "", connected, conns,
                              tls ? " (TLS)" : "", target, size, pipeline);
  if (rate > 0) {
    s += fmt::format("paced at {:.0f} rt/s (latency from the intended send time); {} sends late "
                     "by more than {} ms",
                     rate, late, late_threshold.count());
    if (late > 0) s += fmt::format(" (at most {:.1f} ms)", static_cast<double>(max_lag_ns) / 1e6);
    if (unsent > 0) s += fmt::format(", {} due but not sent by the end", unsent);
  } else {
    s += "closed loop";
  }
  s += "; errors: ";
  if (error_count() == 0) return s + "none";
  bool first = true;
  for (std::size_t k = 0; k < load_error_kinds; ++k) {
    if (errors[k] == 0) continue;
    s += fmt::format("{}{}={}", first ? "" : " ", name(static_cast<load_error>(k)), errors[k]);
    first = false;
  }
  return s;
}

std::string load_result::json() const {
  std::string e;
  for (std::size_t k = 0; k < load_error_kinds; ++k) {
    e += fmt::format(R"({}"{}":{})", k == 0 ? "" : ",", name(static_cast<load_error>(k)),
                     errors[k]);
  }
  return fmt::format(
      R"({{"target":"{}","tls":{},"conns":{},"connected":{},"size":{},"pipeline":{},"rate":{},)"
      R"("duration_s":{:.3f},"stopped":{},"round_trips":{},"bytes":{},"rt_per_s":{:.1f},)"
      R"("mb_per_s":{:.3f},"p50_us":{:.1f},"p99_us":{:.1f},"p999_us":{:.1f},"max_us":{:.1f},)"
      R"("late":{},"unsent":{},"max_lag_us":{:.1f},"errors_total":{},"errors":{{{}}}}})",
      json_escape(target), tls, conns, connected, size, pipeline, rate, seconds, stopped, round_trips, bytes,
      round_trips_per_sec(), megabytes_per_sec(), latency.quantile_us(0.50),
      latency.quantile_us(0.99), latency.quantile_us(0.999),
      static_cast<double>(latency.max()) / 1e3, late, unsent, static_cast<double>(max_lag_ns) / 1e3,
      error_count(), e);
}

}  // namespace fibers_echo
