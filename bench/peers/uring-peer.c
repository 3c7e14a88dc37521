// bench/peers/uring-peer.c - the smallest io_uring TCP echo server and proxy we could write,
// as floors for the benchmarks: what a server that waits and moves bytes through io_uring
// costs on this kernel, with none of a real server's work (no timeouts, limits, TLS, stats or
// DNS). Not a product; its figures answer "would an io_uring socket path pay here?" next to
// the C epoll echo server (bench/run_suite.py, server `uring-c`) and haproxy
// (bench/proxy_bench.py, kind `uring-c`).
//
//     cc -O2 -o uring-peer bench/peers/uring-peer.c -luring
//     uring-peer echo LISTEN_PORT
//     uring-peer proxy LISTEN_PORT UPSTREAM_PORT      (both on 127.0.0.1)
//     uring-peer proxy-ms LISTEN_PORT UPSTREAM_PORT   (multishot receives, see below)
//
// One thread, one ring (SINGLE_ISSUER | DEFER_TASKRUN where the kernel has them). Each
// direction of a connection is a recv → send → recv chain of SQEs over a 16 KiB buffer; an
// echo connection is one direction whose source and destination are the same socket. The
// loop is one io_uring_submit_and_wait() per round: it submits every SQE the last round's
// completions queued and waits for the next completion, so a round costs one system call
// however many connections it served. The proxy's upstream connect is a blocking connect(2)
// at accept time (the benchmarks make their connections before they measure).
//
// proxy-ms: each direction arms one multishot recv (IORING_RECV_MULTISHOT) that takes its
// buffers from a ring of provided buffers, instead of one recv SQE per message: the kernel
// keeps the socket's poll armed between messages. A buffer goes back to the ring once its
// bytes are sent; bytes that arrive while a send is in flight wait in the direction's queue.
// The question it answers: does re-arming a recv per message cost enough CPU that libfibers'
// ring path (one recv per read() call) should move to multishot?
#include <liburing.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { BUFFER = 16384, RING_ENTRIES = 4096 };

// One direction of a connection: bytes read from `from` are sent to `to`.
struct direction {
  int from, to;
  int sending;   // 0: a recv is in flight; 1: a send
  int len, off;  // bytes in buf, bytes of them sent
  int* open;     // directions of the connection still running (shared by both; echo: 1)
  // proxy-ms only: provided buffers received and not yet sent, oldest first (a ring of ids).
  unsigned short pending[64];
  int pend_len[64];
  unsigned pend_head, pend_count;
  int eof;       // the multishot recv ended with end of stream or an error
  char buf[BUFFER];
};

static struct io_uring ring;

static struct io_uring_sqe* next_sqe(void) {
  struct io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  if (sqe == NULL) {  // SQ full: hand the batch to the kernel now
    io_uring_submit(&ring);
    sqe = io_uring_get_sqe(&ring);
  }
  return sqe;
}

static void queue_recv(struct direction* d) {
  struct io_uring_sqe* sqe = next_sqe();
  io_uring_prep_recv(sqe, d->from, d->buf, BUFFER, 0);
  io_uring_sqe_set_data(sqe, d);
  d->sending = 0;
}

static void queue_send(struct direction* d) {
  struct io_uring_sqe* sqe = next_sqe();
  io_uring_prep_send(sqe, d->to, d->buf + d->off, (size_t)(d->len - d->off), MSG_NOSIGNAL);
  io_uring_sqe_set_data(sqe, d);
  d->sending = 1;
}

static void queue_accept(int listener) {
  struct io_uring_sqe* sqe = next_sqe();
  io_uring_prep_accept(sqe, listener, NULL, NULL, SOCK_CLOEXEC);
  io_uring_sqe_set_data(sqe, NULL);  // NULL user data: the listener's completion
}

enum { MS_BUFFERS = 4096, MS_BUFFER = 2048, MS_GROUP = 0 };
static struct io_uring_buf_ring* ms_ring;
static char* ms_mem;
static int multishot;

static void ms_setup(void) {
  const size_t ring_bytes = MS_BUFFERS * sizeof(struct io_uring_buf);
  if (posix_memalign((void**)&ms_ring, 4096, ring_bytes) != 0) abort();
  memset(ms_ring, 0, ring_bytes);
  struct io_uring_buf_reg reg;
  memset(&reg, 0, sizeof reg);
  reg.ring_addr = (unsigned long)ms_ring;
  reg.ring_entries = MS_BUFFERS;
  reg.bgid = MS_GROUP;
  int err = io_uring_register_buf_ring(&ring, &reg, 0);
  if (err != 0) {
    fprintf(stderr, "uring-peer: io_uring_register_buf_ring: %s\n", strerror(-err));
    exit(1);
  }
  ms_mem = malloc((size_t)MS_BUFFERS * MS_BUFFER);
  io_uring_buf_ring_init(ms_ring);
  for (int i = 0; i < MS_BUFFERS; ++i) {
    io_uring_buf_ring_add(ms_ring, ms_mem + (size_t)i * MS_BUFFER, MS_BUFFER, (unsigned short)i,
                          io_uring_buf_ring_mask(MS_BUFFERS), i);
  }
  io_uring_buf_ring_advance(ms_ring, MS_BUFFERS);
}

static void ms_give_back(unsigned short bid) {
  io_uring_buf_ring_add(ms_ring, ms_mem + (size_t)bid * MS_BUFFER, MS_BUFFER, bid,
                        io_uring_buf_ring_mask(MS_BUFFERS), 0);
  io_uring_buf_ring_advance(ms_ring, 1);
}

static void ms_queue_recv(struct direction* d) {
  struct io_uring_sqe* sqe = next_sqe();
  io_uring_prep_recv_multishot(sqe, d->from, NULL, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = MS_GROUP;
  io_uring_sqe_set_data(sqe, d);
}

// Sends the oldest pending buffer from where the last send left it (d->off).
static void ms_queue_send(struct direction* d) {
  const unsigned short bid = d->pending[d->pend_head];
  struct io_uring_sqe* sqe = next_sqe();
  io_uring_prep_send(sqe, d->to, ms_mem + (size_t)bid * MS_BUFFER + d->off,
                     (size_t)(d->pend_len[d->pend_head] - d->off), MSG_NOSIGNAL);
  // The send's completion is told apart from the recv's by the low bit of the user data.
  io_uring_sqe_set_data(sqe, (void*)((unsigned long)d | 1));
  d->sending = 1;
}

static void finish(struct direction* d);

static void ms_on_recv(struct direction* d, struct io_uring_cqe* cqe) {
  if (cqe->res > 0) {
    if (d->pend_count == 64) abort();  // more than 64 messages behind one send: not in the benchmark
    const unsigned slot = (d->pend_head + d->pend_count++) % 64;
    d->pending[slot] = (unsigned short)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
    d->pend_len[slot] = cqe->res;
    if (!d->sending) {
      d->off = 0;
      ms_queue_send(d);
    }
    if (!(cqe->flags & IORING_CQE_F_MORE)) ms_queue_recv(d);  // the kernel ended it: arm again
    return;
  }
  d->eof = 1;  // end of stream or an error: the direction ends once its sends are done
  if (!d->sending) finish(d);
}

static void ms_on_send(struct direction* d, int res) {
  if (res < 0) {
    d->sending = 0;
    d->eof = 1;  // the recv may still be armed: leave the direction for the benchmark's end
    return;
  }
  d->off += res;
  if (d->off < d->pend_len[d->pend_head]) {
    ms_queue_send(d);
    return;
  }
  ms_give_back(d->pending[d->pend_head]);
  d->pend_head = (d->pend_head + 1) % 64;
  --d->pend_count;
  d->off = 0;
  d->sending = 0;
  if (d->pend_count > 0) ms_queue_send(d);
  else if (d->eof) finish(d);
}

static struct sockaddr_in loopback(int port) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

// A direction ended (end of stream or error): pass the end on; the last one closes the fds.
static void finish(struct direction* d) {
  shutdown(d->to, SHUT_WR);
  if (--*d->open == 0) {
    close(d->from);
    if (d->to != d->from) close(d->to);
    free(d->open);
  }
  free(d);
}

static struct direction* new_direction(int from, int to, int* open) {
  struct direction* d = calloc(1, sizeof *d);
  d->from = from, d->to = to, d->open = open;
  return d;
}

// A new client: echo (upstream_port 0) or connect it to the upstream; start its directions.
static void start_connection(int client, int upstream_port) {
  const int one = 1;
  setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int* open = malloc(sizeof *open);
  if (upstream_port == 0) {
    *open = 1;
    queue_recv(new_direction(client, client, open));
    return;
  }
  int up = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in ua = loopback(upstream_port);
  if (up < 0 || connect(up, (struct sockaddr*)&ua, sizeof ua) != 0) {
    perror("uring-peer: upstream");
    close(client);
    if (up >= 0) close(up);
    free(open);
    return;
  }
  setsockopt(up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  *open = 2;
  void (*arm)(struct direction*) = multishot ? ms_queue_recv : queue_recv;
  arm(new_direction(client, up, open));
  arm(new_direction(up, client, open));
}

int main(int argc, char** argv) {
  const int echo = argc == 3 && strcmp(argv[1], "echo") == 0;
  multishot = argc == 4 && strcmp(argv[1], "proxy-ms") == 0;
  if (!echo && !multishot && !(argc == 4 && strcmp(argv[1], "proxy") == 0)) {
    fprintf(stderr, "usage: uring-peer echo LISTEN_PORT | uring-peer proxy|proxy-ms LISTEN_PORT UPSTREAM_PORT\n");
    return 2;
  }
  const int port = atoi(argv[2]), upstream_port = echo ? 0 : atoi(argv[3]);
  struct io_uring_params p;
  memset(&p, 0, sizeof p);
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL;
  if (io_uring_queue_init_params(RING_ENTRIES, &ring, &p) < 0) {
    memset(&p, 0, sizeof p);  // a kernel older than 6.1: no deferred task work
    int err = io_uring_queue_init_params(RING_ENTRIES, &ring, &p);
    if (err < 0) {
      fprintf(stderr, "uring-peer: io_uring_queue_init: %s\n", strerror(-err));
      return 1;
    }
  }
  if (multishot) ms_setup();
  const int one = 1;
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in la = loopback(port);
  if (listener < 0 || bind(listener, (struct sockaddr*)&la, sizeof la) != 0 ||
      listen(listener, 1024) != 0) {
    perror("uring-peer: listen");
    return 1;
  }
  queue_accept(listener);
  for (;;) {
    int err = io_uring_submit_and_wait(&ring, 1);
    if (err < 0 && err != -EINTR) {
      fprintf(stderr, "uring-peer: io_uring_submit_and_wait: %s\n", strerror(-err));
      return 1;
    }
    struct io_uring_cqe* cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      ++seen;
      struct direction* d = io_uring_cqe_get_data(cqe);
      const int res = cqe->res;
      if (multishot && d != NULL) {
        const unsigned long tag = (unsigned long)d;
        if (tag & 1) ms_on_send((struct direction*)(tag & ~1ul), res);
        else ms_on_recv(d, cqe);
      } else if (d == NULL) {
        if (res >= 0) start_connection(res, upstream_port);
        queue_accept(listener);
      } else if (!d->sending) {
        if (res <= 0) {
          finish(d);
        } else {
          d->len = res, d->off = 0;
          queue_send(d);
        }
      } else if (res < 0) {
        finish(d);
      } else {
        d->off += res;
        if (d->off < d->len) queue_send(d);
        else queue_recv(d);
      }
    }
    io_uring_cq_advance(&ring, seen);
  }
}
