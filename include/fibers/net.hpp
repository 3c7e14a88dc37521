// fibers/net.hpp - everything for networking: endpoints, stream sockets, listeners, UDP.
#pragma once

#include "fibers/detail/config.hpp"

#include "fibers/buffer.hpp"
#include "fibers/clock.hpp"
#include "fibers/dns.hpp"
#include "fibers/endpoint.hpp"
#include "fibers/error.hpp"
#include "fibers/stream_listener.hpp"
#include "fibers/stream_socket.hpp"
#include "fibers/udp_socket.hpp"
