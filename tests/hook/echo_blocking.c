/* tests/hook/echo_blocking.c - see echo_blocking.h. Written as any blocking C network code
   is: socket/bind/listen/accept, connect, read and write loops, errno checks. */
#include "echo_blocking.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int echo_listen(int* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (bind(fd, (struct sockaddr*)&a, sizeof a) != 0 || listen(fd, 4096) != 0 ||
      getsockname(fd, (struct sockaddr*)&a, &len) != 0) {
    close(fd);
    return -1;
  }
  *port = ntohs(a.sin_port);
  return fd;
}

int echo_accept(int listen_fd) {
  for (;;) {
    int fd = accept(listen_fd, NULL, NULL);
    if (fd >= 0 || errno != EINTR) return fd;
  }
}

long echo_serve(int fd) {
  char buf[16384];
  long total = 0;
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      close(fd);
      return n == 0 ? total : -1;
    }
    ssize_t off = 0;
    while (off < n) {
      ssize_t w = write(fd, buf + off, (size_t)(n - off));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        close(fd);
        return -1;
      }
      off += w;
    }
    total += n;
  }
}

static int read_exact(int fd, char* p, size_t n) {
  while (n > 0) {
    ssize_t r = recv(fd, p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno;
    if (r == 0) return ECONNRESET;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

int echo_client(int port, int rounds, size_t size) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons((unsigned short)port);
  if (connect(fd, (struct sockaddr*)&a, sizeof a) != 0) {
    int e = errno;
    close(fd);
    return e;
  }
  char* out = malloc(size);
  char* in = malloc(size);
  int rc = 0;
  if (out == NULL || in == NULL) rc = ENOMEM;
  for (int i = 0; rc == 0 && i < rounds; ++i) {
    for (size_t j = 0; j < size; ++j) out[j] = (char)('a' + (i + (int)j) % 26);
    if (send(fd, out, size, 0) != (ssize_t)size) {
      rc = errno != 0 ? errno : -1;
      break;
    }
    rc = read_exact(fd, in, size);
    if (rc == 0 && memcmp(in, out, size) != 0) rc = -1;
  }
  free(out);
  free(in);
  close(fd);
  return rc;
}
