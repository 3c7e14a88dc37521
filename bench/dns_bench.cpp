// bench/dns_bench.cpp - lookups per second against the local scripted DNS server
// (tests/dns_test_server.hpp, on its own I/O thread), three ways, in one run:
//   reactor : fibers::dns::resolve on one I/O thread (c-ares on the thread's reactor)
//   pool    : getaddrinfo on the blocking pool (glibc's resolver pointed at the same server)
//   C loop  : plain c-ares driven by a level-triggered epoll loop on a plain thread (ceiling)
// Every lookup is a distinct name, A + AAAA (two queries), at most `inflight` lookups at once
// for c-ares (the library's default cap), 64 pool threads for getaddrinfo.
//
//   build/bench/dns_bench [lookups=20000] [rounds=3] [no-pool]
#include <ares.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <resolv.h>
#include <sys/epoll.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "../tests/dns_test_server.hpp"
#include "fibers/fibers.hpp"

namespace {

using namespace std::chrono_literals;
constexpr std::size_t inflight = 128;

/// "<tag><round>-<i>.bench" (built by appending: GCC 12's -Wrestrict misfires on
/// literal + std::string chains at -O3).
std::string name_for(char tag, int round, int i) {
  std::string s(1, tag);
  s += std::to_string(round);
  s += '-';
  s += std::to_string(i);
  s += ".bench";
  return s;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// --- reactor: the library --------------------------------------------------------------
double run_reactor(const fibers::dns::options& o, int n, int round, int& failed) {
  // 4 x the cap of fibers, each resolving in turn: the channel always has a full window and
  // a queue, and stacks are reused (10,000 fresh stacks would measure first page touches).
  const int workers = static_cast<int>(4 * inflight);
  fibers::wait_group wg;
  wg.add(workers);
  int next = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int w = 0; w < workers; ++w) {
    fibers::spawn([&] {
      std::string name;
      for (int i; (i = next++) < n;) {
        name = name_for('r', round, i);
        std::error_code ec;
        auto eps = fibers::dns::resolve(name, 80, ec, o);
        if (ec || eps.size() != 2) ++failed;
      }
      wg.done();
    }).detach();
  }
  wg.wait();
  return n / seconds_since(t0);
}

// --- pool: getaddrinfo on the blocking pool -------------------------------------------
// glibc's per-thread resolver state (_res), pointed at the test server on each pool thread
// (glibc keeps a configuration modified by hand: resolv/resolv_context.c, maybe_init).
void point_glibc_at(std::uint16_t port) {
  thread_local bool done = false;
  if (done) return;
  res_init();
  _res.nscount = 1;
  _res.nsaddr_list[0].sin_family = AF_INET;
  _res.nsaddr_list[0].sin_port = htons(port);
  _res.nsaddr_list[0].sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  _res.retrans = 5;
  _res.retry = 3;
  done = true;
}

double run_pool(std::uint16_t port, int n, int round, int& failed) {
  fibers::wait_group wg;
  wg.add(n);
  std::size_t max_conc = 0;
  // One fiber per pool thread's worth of concurrency, each doing its share in turn.
  const int workers = 64;
  std::atomic<int> next{0};
  const auto t0 = std::chrono::steady_clock::now();
  for (int w = 0; w < workers; ++w) {
    fibers::spawn([&] {
      for (int i; (i = next.fetch_add(1)) < n;) {
        const std::string name = name_for('g', round, i);
        const int got = fibers::blocking([name, port] {
          point_glibc_at(port);
          addrinfo hints{};
          hints.ai_socktype = SOCK_STREAM;
          addrinfo* res = nullptr;
          int count = 0;
          if (::getaddrinfo(name.c_str(), nullptr, &hints, &res) == 0) {
            for (auto* p = res; p != nullptr; p = p->ai_next) ++count;
            ::freeaddrinfo(res);
          }
          return count;
        });
        if (got != 2) ++failed;
        wg.done();
      }
    }).detach();
  }
  (void)max_conc;
  wg.wait();
  return n / seconds_since(t0);
}

// --- C loop: plain c-ares on epoll (the ceiling) ----------------------------------------
struct cloop {
  ares_channel ch = nullptr;
  int ep = -1;
  int done = 0, failed = 0, started = 0, n = 0;
  int round = 0;

  static void sock_cb(void* data, ares_socket_t fd, int r, int w) {
    auto* self = static_cast<cloop*>(data);
    epoll_event ev{};
    ev.data.fd = fd;
    ev.events = (r ? EPOLLIN : 0u) | (w ? EPOLLOUT : 0u);
    if (!r && !w) {
      epoll_ctl(self->ep, EPOLL_CTL_DEL, fd, nullptr);
    } else if (epoll_ctl(self->ep, EPOLL_CTL_MOD, fd, &ev) != 0) {
      epoll_ctl(self->ep, EPOLL_CTL_ADD, fd, &ev);
    }
  }
  static void on_done(void* arg, int status, int, ares_addrinfo* ai) {
    auto* self = static_cast<cloop*>(arg);
    int count = 0;
    if (ai != nullptr) {
      for (auto* p = ai->nodes; p != nullptr; p = p->ai_next) ++count;
      ares_freeaddrinfo(ai);
    }
    if (status != ARES_SUCCESS || count != 2) ++self->failed;
    ++self->done;
  }
  void start_more() {
    while (started < n && started - done < static_cast<int>(inflight)) {
      const std::string name = name_for('c', round, started++);
      ares_addrinfo_hints h{};
      h.ai_family = AF_UNSPEC;
      h.ai_flags = ARES_AI_NOSORT | ARES_AI_ENVHOSTS;
      ares_getaddrinfo(ch, name.c_str(), nullptr, &h, &on_done, this);
    }
  }
};

double run_cloop(const std::string& server, int n, int round, int& failed) {
  double rate = 0;
  // On a blocking-pool thread: the I/O thread (which serves nothing here) only parks.
  fibers::blocking([&] {
    cloop c;
    c.n = n;
    c.round = round;
    c.ep = epoll_create1(EPOLL_CLOEXEC);
    ares_options o{};
    o.sock_state_cb = &cloop::sock_cb;
    o.sock_state_cb_data = &c;
    o.flags = ARES_FLAG_STAYOPEN | ARES_FLAG_NOCHECKRESP;
    o.tries = 3;
    o.timeout = 5000;
    ares_init_options(&c.ch, &o, ARES_OPT_SOCK_STATE_CB | ARES_OPT_FLAGS | ARES_OPT_TRIES | ARES_OPT_TIMEOUTMS);
    ares_set_servers_ports_csv(c.ch, server.c_str());
    const auto t0 = std::chrono::steady_clock::now();
    c.start_more();
    epoll_event evs[64];
    while (c.done < n) {
      timeval tv{};
      timeval* tp = ares_timeout(c.ch, nullptr, &tv);
      const int ms = tp == nullptr ? -1 : static_cast<int>(tp->tv_sec * 1000 + tp->tv_usec / 1000);
      const int k = epoll_wait(c.ep, evs, 64, ms);
      if (k == 0) ares_process_fd(c.ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
      for (int i = 0; i < k; ++i) {
        const int fd = evs[i].data.fd;
        ares_process_fd(c.ch, (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) ? fd : ARES_SOCKET_BAD,
                        (evs[i].events & EPOLLOUT) ? fd : ARES_SOCKET_BAD);
      }
      c.start_more();
    }
    rate = n / seconds_since(t0);
    failed += c.failed;
    ares_destroy(c.ch);
    ::close(c.ep);
  });
  return rate;
}

double cpu_seconds(clockid_t id) {
  timespec ts{};
  ::clock_gettime(id, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

/// CPU seconds used so far by I/O thread 1 (the server).
double server_cpu() {
  double v = 0;
  fibers::runtime::current()->spawn_on(1, [&] { v = cpu_seconds(CLOCK_THREAD_CPUTIME_ID); }).join();
  return v;
}

/// Runs one measurement: returns lookups/s and sets `client_us`, the CPU time per lookup of
/// everything but the server thread (the client's thread, pool threads, the epoll thread).
template <class F>
double measure(int n, double& client_us, F&& run) {
  const double p0 = cpu_seconds(CLOCK_PROCESS_CPUTIME_ID), s0 = server_cpu();
  const double rate = run();
  const double p1 = cpu_seconds(CLOCK_PROCESS_CPUTIME_ID), s1 = server_cpu();
  client_us = ((p1 - p0) - (s1 - s0)) * 1e6 / n;
  return rate;
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 20000;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
  const bool skip_pool = argc > 3 && std::string(argv[3]) == "no-pool";  // for profiling the other two
  ares_library_init(ARES_LIB_INIT_ALL);
  fibers::runtime rt(2);
  rt.run([&] {
    fibers_test::dns_server server(1);  // answers on I/O thread 1
    server.set_fallback({.a = {"10.0.0.1"}, .aaaa = {"fd00::1"}});
    server.count_names(false);
    fibers::dns::options o = server.options(5000ms, 3);
    o.max_in_flight = inflight;
    int f_reactor = 0, f_pool = 0, f_c = 0;
    std::vector<double> reactor, pool, cl, reactor_us, pool_us, cl_us;
    run_reactor(o, 1000, 99, f_reactor);  // warm-up: channel, stacks
    f_reactor = 0;
    std::printf("dns_bench: %d lookups (A+AAAA, distinct names) per run, %d rounds, server on its own I/O thread\n"
                "(client CPU = process CPU minus the server thread's, per lookup)\n", n, rounds);
    auto med = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      return v[v.size() / 2];
    };
    for (int r = 0; r < rounds; ++r) {
      double us = 0;
      cl.push_back(measure(n, us, [&] { return run_cloop(server.address(), n, r, f_c); }));
      cl_us.push_back(us);
      reactor.push_back(measure(n, us, [&] { return run_reactor(o, n, r, f_reactor); }));
      reactor_us.push_back(us);
      pool.push_back(skip_pool ? 1.0 : measure(n, us, [&] { return run_pool(server.port(), n, r, f_pool); }));
      pool_us.push_back(us);
      std::printf("  round %d: C loop %7.0f/s %5.1f us  reactor %7.0f/s %5.1f us  pool %7.0f/s %5.1f us\n", r,
                  cl.back(), cl_us.back(), reactor.back(), reactor_us.back(), pool.back(), pool_us.back());
    }
    // The machine's load moves every figure between rounds; the three ways of one round run
    // back to back, so the per-round ratios (paired) are the steadier figure.
    std::vector<double> r_rate, p_rate, r_cpu, p_cpu;
    for (int r = 0; r < rounds; ++r) {
      r_rate.push_back(reactor[r] / cl[r]);
      p_rate.push_back(pool[r] / cl[r]);
      r_cpu.push_back(reactor_us[r] / cl_us[r]);
      p_cpu.push_back(pool_us[r] / cl_us[r]);
    }
    std::printf("median lookups/s: C loop %.0f, reactor %.0f, getaddrinfo pool %.0f\n", med(cl), med(reactor), med(pool));
    std::printf("median client CPU per lookup: C loop %.1f us, reactor %.1f us, pool %.1f us\n", med(cl_us),
                med(reactor_us), med(pool_us));
    std::printf("paired ratios to the C loop (median of rounds): lookups/s reactor %.2fx, pool %.2fx; "
                "CPU per lookup reactor %.2fx, pool %.2fx\n",
                med(r_rate), med(p_rate), med(r_cpu), med(p_cpu));
    std::printf("failed lookups: C loop %d, reactor %d, pool %d\n", f_c, f_reactor, f_pool);
  });
}
