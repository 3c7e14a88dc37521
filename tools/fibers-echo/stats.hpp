// tools/fibers-echo/stats.hpp - a log-linear latency histogram (nanoseconds) for the load client.
//
// Each power of two is split into `sub_buckets` linear steps, so any recorded value is known
// to within 1/sub_buckets (~1.6 %) of itself, at a fixed 32 KiB per histogram: cheap enough to
// keep one per I/O thread and merge at the end.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>

namespace fibers_echo {

class latency_histogram {
 public:
  static constexpr int sub_bits = 6;
  static constexpr std::uint64_t sub_buckets = std::uint64_t{1} << sub_bits;
  static constexpr std::size_t bucket_count = 64 * sub_buckets;

  /// Adds one sample of `ns` nanoseconds.
  void record(std::uint64_t ns) noexcept {
    ++buckets_[index(ns)];
    ++count_;
    if (ns > max_) max_ = ns;
  }

  /// Adds every sample of `other`.
  void merge(const latency_histogram& other) noexcept {
    for (std::size_t i = 0; i < bucket_count; ++i) buckets_[i] += other.buckets_[i];
    count_ += other.count_;
    if (other.max_ > max_) max_ = other.max_;
  }

  /// Number of samples.
  std::uint64_t count() const noexcept { return count_; }
  /// The largest sample (exact); 0 when empty.
  std::uint64_t max() const noexcept { return max_; }

  /// The value (ns) below which a fraction `q` (0..1) of the samples lie; 0 when empty.
  std::uint64_t quantile(double q) const noexcept {
    if (count_ == 0) return 0;
    auto rank = static_cast<std::uint64_t>(q * static_cast<double>(count_));
    if (rank >= count_) rank = count_ - 1;
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < bucket_count; ++i) {
      seen += buckets_[i];
      if (seen > rank) return midpoint(i);
    }
    return midpoint(bucket_count - 1);
  }
  /// quantile(q) in microseconds, never above max() (a bucket's midpoint can be).
  double quantile_us(double q) const noexcept {
    std::uint64_t v = quantile(q);
    return static_cast<double>(v < max_ ? v : max_) / 1e3;
  }

 private:
  // Values below sub_buckets map to themselves; above, the top set bit picks the power of two
  // and the next sub_bits bits the linear step inside it.
  static std::size_t index(std::uint64_t v) noexcept {
    if (v < sub_buckets) return static_cast<std::size_t>(v);
    int msb = 63 - std::countl_zero(v);
    int shift = msb - sub_bits;
    return static_cast<std::size_t>(shift + 1) * sub_buckets +
           static_cast<std::size_t>((v >> shift) & (sub_buckets - 1));
  }
  static std::uint64_t midpoint(std::size_t i) noexcept {
    if (i < sub_buckets) return i;
    auto shift = static_cast<int>(i / sub_buckets) - 1;
    std::uint64_t low = (sub_buckets + i % sub_buckets) << shift;
    return low + ((std::uint64_t{1} << shift) >> 1);
  }

  std::array<std::uint64_t, bucket_count> buckets_{};
  std::uint64_t count_ = 0;
  std::uint64_t max_ = 0;
};

}  // namespace fibers_echo
