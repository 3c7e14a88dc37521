// lib/runtime/symbolize.hpp - turning a code address into "0x... function (library)".
#pragma once

#include <string>

namespace fibers::detail {

/// The address, its demangled function name when dladdr knows it (exported symbols: link
/// executables with -rdynamic) and the object it lies in.
std::string symbolize(void* pc);

}  // namespace fibers::detail
