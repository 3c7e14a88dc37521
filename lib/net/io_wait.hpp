// lib/net/io_wait.hpp - parking a fiber until a registered fd is ready, and the error
// conventions the socket classes share.
#pragma once

#include <cerrno>
#include <system_error>

#include "fibers/clock.hpp"
#include "reactor/reactor.hpp"

namespace fibers::detail {

enum class io_dir { read, write };

/// Parks until `slot` is ready for `dir`, `until` passes (std::errc::timed_out), the fiber is
/// canceled (errc::canceled) or the socket is closed by another fiber (errc::closed; the
/// slot must not be touched afterwards). Only one fiber may wait per direction (errc::busy).
std::error_code wait_ready(io_slot* slot, io_dir dir, clock::time_point until) noexcept;

/// errno as an error_code.
inline std::error_code last_error() noexcept { return {errno, std::generic_category()}; }

}  // namespace fibers::detail
