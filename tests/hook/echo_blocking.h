/* tests/hook/echo_blocking.h - a blocking echo server and client in plain C (no libfibers
   header anywhere): what libfibers-hook must run on fibers unchanged. */
#ifndef FIBERS_TESTS_HOOK_ECHO_BLOCKING_H
#define FIBERS_TESTS_HOOK_ECHO_BLOCKING_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A TCP listener on 127.0.0.1, an ephemeral port (written to *port). -1 on error. */
int echo_listen(int* port);
/* Blocking accept: the connection's fd, or -1. */
int echo_accept(int listen_fd);
/* Echoes everything read on fd until end of stream, then closes it. Returns bytes echoed, or
   -1 on an error. */
long echo_serve(int fd);
/* Connects to 127.0.0.1:port and does `rounds` round trips of `size` bytes (each reply checked
   byte for byte), then closes. 0 on success, otherwise the errno of the failure (or -1 for a
   wrong reply). */
int echo_client(int port, int rounds, size_t size);

#ifdef __cplusplus
}
#endif

#endif
