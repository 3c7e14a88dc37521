// fibers/fibers.hpp - the whole public API in one include.
#pragma once

#include "fibers/error.hpp"
#include "fibers/fiber.hpp"
#include "fibers/net.hpp"
#include "fibers/runtime.hpp"
