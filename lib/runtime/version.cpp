// lib/runtime/version.cpp - fibers::version().
#include "fibers/version.hpp"

namespace fibers {

const char* version() noexcept { return FIBERS_VERSION_STRING; }

}  // namespace fibers
