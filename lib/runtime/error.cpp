// lib/runtime/error.cpp - the "fibers" error category.
#include "fibers/error.hpp"

namespace fibers {
namespace {

class category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "fibers"; }
  std::string message(int code) const override {
    switch (static_cast<errc>(code)) {
      case errc::canceled: return "operation canceled";
      case errc::closed: return "closed by another fiber while waiting";
      case errc::end_of_stream: return "end of stream";
      case errc::busy: return "another fiber is already waiting on this socket in the same direction";
      case errc::channel_closed: return "channel closed";
    }
    return "unknown fibers error " + std::to_string(code);
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const category instance;
  return instance;
}

void throw_error(const std::error_code& ec, const std::string& what) {
  if (ec == errc::canceled) throw canceled(what);
  throw std::system_error(ec, what);
}

}  // namespace fibers
