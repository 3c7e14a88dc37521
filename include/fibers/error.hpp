// fibers/error.hpp - the library's own error codes and the `canceled` exception.
//
// Operating-system failures are reported with std::generic_category() errno values
// (e.g. std::errc::connection_refused, std::errc::timed_out); conditions that have no errno
// (a canceled fiber, a socket closed while a fiber waited on it, end of stream in read_exact)
// use fibers::errc in fibers::error_category().
#pragma once

#include "fibers/detail/config.hpp"

#include <string>
#include <system_error>

namespace fibers {

/// Library error conditions that have no errno equivalent.
enum class errc {
  canceled = 1,   ///< the waiting fiber was canceled (fiber::cancel, scope, runtime shutdown)
  closed,         ///< the object was closed by another fiber while this one waited on it
  end_of_stream,  ///< the peer closed the stream before the requested bytes arrived
  busy,           ///< another fiber is already waiting for the same direction on this socket
  channel_closed, ///< send on a closed channel
};

/// The category of fibers::errc codes; its name() is "fibers".
const std::error_category& error_category() noexcept;

/// Makes an error_code of fibers::errc (found by ADL, so `ec == fibers::errc::canceled` works).
inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

/// Thrown by throwing-form waits when the calling fiber has been canceled.
/// Let it propagate: the fiber unwinds, and a join() on it rethrows it.
class canceled : public std::system_error {
 public:
  /// `what` names the operation that was interrupted, e.g. "read 127.0.0.1:80".
  explicit canceled(const std::string& what = "fiber canceled")
      : std::system_error(make_error_code(errc::canceled), what) {}
};

/// Throws fibers::canceled when `ec` is errc::canceled, otherwise std::system_error(ec, what).
/// `ec` must be set.
[[noreturn]] void throw_error(const std::error_code& ec, const std::string& what);

/// throw_error(ec, what) if `ec` is set; does nothing (and builds no string) when it is clear.
inline void throw_if_error(const std::error_code& ec, const char* what) {
  if (ec) [[unlikely]] throw_error(ec, what);
}
/// throw_error(ec, what) if `ec` is set.
inline void throw_if_error(const std::error_code& ec, const std::string& what) {
  if (ec) [[unlikely]] throw_error(ec, what);
}

}  // namespace fibers

/// @cond internal
template <>
struct std::is_error_code_enum<fibers::errc> : std::true_type {};
/// @endcond
