// fibers/buffer.hpp - byte views passed to read/write calls.
#pragma once

#include "fibers/detail/config.hpp"

#include <cstddef>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

namespace fibers {

namespace detail {
template <class R>
concept byte_range = std::ranges::contiguous_range<R> && std::ranges::sized_range<R> &&
                     sizeof(std::ranges::range_value_t<R>) == 1 &&
                     std::is_trivially_copyable_v<std::ranges::range_value_t<R>>;
}  // namespace detail

/// A writable span of bytes: what read calls fill. Built from (pointer, size) or from any
/// contiguous range of 1-byte elements (std::string, std::vector<char>, std::array<std::byte>).
struct mutable_buffer {
  void* data = nullptr;   ///< first byte
  std::size_t size = 0;   ///< number of bytes
  /// An empty buffer.
  constexpr mutable_buffer() noexcept = default;
  /// `n` bytes at `p`.
  constexpr mutable_buffer(void* p, std::size_t n) noexcept : data(p), size(n) {}
  /// The bytes of a contiguous range of 1-byte elements.
  template <detail::byte_range R>
    requires(!std::is_const_v<std::remove_reference_t<std::ranges::range_reference_t<R>>>)
  mutable_buffer(R&& r) noexcept  // NOLINT: implicit by design
      : data(std::ranges::data(r)), size(std::ranges::size(r)) {}
};

/// A read-only span of bytes: what write calls send. Also built from string literals and
/// std::string_view.
struct const_buffer {
  const void* data = nullptr;  ///< first byte
  std::size_t size = 0;        ///< number of bytes
  /// An empty buffer.
  constexpr const_buffer() noexcept = default;
  /// Implicit conversions: (pointer, size), a mutable_buffer, a string view or C string (no
  /// terminating NUL), any contiguous range of 1-byte elements.
  ///@{
  constexpr const_buffer(const void* p, std::size_t n) noexcept : data(p), size(n) {}
  constexpr const_buffer(mutable_buffer b) noexcept : data(b.data), size(b.size) {}  // NOLINT
  constexpr const_buffer(std::string_view s) noexcept : data(s.data()), size(s.size()) {}  // NOLINT
  constexpr const_buffer(const char* s) noexcept : const_buffer(std::string_view(s)) {}  // NOLINT
  template <detail::byte_range R>
  const_buffer(const R& r) noexcept  // NOLINT: implicit by design
      : data(std::ranges::data(r)), size(std::ranges::size(r)) {}
  ///@}
};

}  // namespace fibers
