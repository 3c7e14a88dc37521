// lib/runtime/symbolize.cpp
#include "runtime/symbolize.hpp"

#include <cxxabi.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

namespace fibers::detail {

std::string symbolize(void* pc) {
  Dl_info info{};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%p", pc);
  std::string out = buf;
  if (::dladdr(pc, &info) != 0) {
    if (info.dli_sname != nullptr) {
      int status = 0;
      std::unique_ptr<char, void (*)(void*)> demangled(
          abi::__cxa_demangle(info.dli_sname, nullptr, nullptr, &status), std::free);
      out += " ";
      out += status == 0 && demangled ? demangled.get() : info.dli_sname;
    }
    if (info.dli_fname != nullptr) {
      out += " (";
      out += info.dli_fname;
      out += ")";
    }
  }
  return out;
}

}  // namespace fibers::detail
