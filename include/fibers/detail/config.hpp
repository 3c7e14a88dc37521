// fibers/detail/config.hpp - what every public header needs from the compiler.
#pragma once

#if !defined(__cplusplus) || __cplusplus < 202002L
#error "libfibers needs C++20 or later: compile with -std=c++20 (or -std=gnu++20, c++23, ...)"
#endif
