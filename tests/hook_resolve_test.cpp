// tests/hook_resolve_test.cpp - libfibers-hook's older resolver calls: gethostbyname(2)(_r) on
// a fiber go through fibers::dns (here: the scripted DNS server of tests/dns_test_server.hpp,
// named with hook::set_dns_options) and keep glibc's return/h_errno/errno contract;
// getnameinfo's reverse lookups park the fiber (blocking pool). On plain threads: glibc.
// Part of hook_test (the 'hook' meson test).
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "dns_test_server.hpp"
#include <gtest/gtest.h>

#include "fibers/blocking.hpp"
#include "fibers/hook.hpp"
#include "hook/hook_test_util.hpp"
#include "heartbeat_fiber.hpp"

namespace {

using namespace std::chrono_literals;
using fibers::hook::call;

using hook_test::parked;

std::vector<std::string> addresses(const hostent* h) {
  std::vector<std::string> out;
  for (char** a = h->h_addr_list; *a != nullptr; ++a) {
    char text[INET6_ADDRSTRLEN];
    out.emplace_back(::inet_ntop(h->h_addrtype, *a, text, sizeof text));
  }
  return out;
}

/// A scripted DNS server on this fiber's thread that the hook's lookups ask, until destroyed.
struct hook_dns {
  fibers_test::dns_server server;
  hook_dns() { fibers::hook::set_dns_options(server.options(500ms)); }
  ~hook_dns() { fibers::hook::set_dns_options({}); }
};

TEST(Hook, GethostbynameROnAFiberGoesThroughFibersDns) {
  fibers::run([] {
    hook_dns dns;
    dns.server.set("two.hook.test", {.a = {"10.1.2.3", "10.1.2.4"}, .aaaa = {"2001:db8::1"}});
    dns.server.set("slow.hook.test", {.a = {"10.9.9.9"}, .delay = 100ms});
    hostent h{}, *res = nullptr;
    char buf[1024];
    int herr = -7;
    const auto g0 = parked(call::gethostbyname);
    errno = EDOM;
    ASSERT_EQ(::gethostbyname_r("two.hook.test", &h, buf, sizeof buf, &res, &herr), 0);
    EXPECT_EQ(errno, 0);  // glibc leaves errno equal to the return value
    ASSERT_EQ(res, &h);
    EXPECT_STREQ(h.h_name, "two.hook.test");
    EXPECT_EQ(h.h_aliases[0], nullptr);
    EXPECT_EQ(h.h_addrtype, AF_INET);
    EXPECT_EQ(h.h_length, 4);
    EXPECT_EQ(addresses(&h), (std::vector<std::string>{"10.1.2.3", "10.1.2.4"}));
    EXPECT_EQ(parked(call::gethostbyname), g0 + 1);
    ASSERT_EQ(::gethostbyname2_r("two.hook.test", AF_INET6, &h, buf, sizeof buf, &res, &herr), 0);
    ASSERT_EQ(res, &h);
    EXPECT_EQ(h.h_addrtype, AF_INET6);
    EXPECT_EQ(h.h_length, 16);
    EXPECT_EQ(addresses(&h), std::vector<std::string>{"2001:db8::1"});
    // Only the fiber waits: the heartbeat on the same thread ticks through a 100 ms answer.
    {
      fibers_test::heartbeat hb;
      ASSERT_EQ(::gethostbyname_r("slow.hook.test", &h, buf, sizeof buf, &res, &herr), 0);
      ASSERT_EQ(res, &h);
      EXPECT_EQ(addresses(&h), std::vector<std::string>{"10.9.9.9"});
      hb.stop();
      EXPECT_GE(hb.ticks(), 5);
      EXPECT_LT(hb.max_gap(), fibers_test::stall_limit);
    }
    // A buffer too small: ERANGE and NETDB_INTERNAL, as glibc.
    char small[16];
    errno = 0;
    EXPECT_EQ(::gethostbyname_r("two.hook.test", &h, small, sizeof small, &res, &herr), ERANGE);
    EXPECT_EQ(res, nullptr);
    EXPECT_EQ(herr, NETDB_INTERNAL);
    EXPECT_EQ(errno, ERANGE);
    // Literals need no lookup: glibc's, not counted.
    const auto g1 = parked(call::gethostbyname);
    ASSERT_EQ(::gethostbyname_r("127.0.0.1", &h, buf, sizeof buf, &res, &herr), 0);
    ASSERT_EQ(res, &h);
    ASSERT_EQ(::gethostbyname_r("127.1", &h, buf, sizeof buf, &res, &herr), 0);  // inet_aton's form
    ASSERT_EQ(res, &h);
    EXPECT_EQ(addresses(&h), std::vector<std::string>{"127.0.0.1"});
    EXPECT_EQ(parked(call::gethostbyname), g1);
  });
}

TEST(Hook, GethostbynameFailuresKeepGlibcsHerrnoContract) {
  fibers::run([] {
    hook_dns dns;
    dns.server.set("nx.hook.test", {.rcode = 3});
    dns.server.set("v6only.hook.test", {.aaaa = {"2001:db8::2"}});
    dns.server.set("fail.hook.test", {.rcode = 2});
    dns.server.set("refused.hook.test", {.rcode = 5});
    hostent h{}, *res = &h;
    char buf[512];
    int herr = 0;
    errno = EDOM;
    EXPECT_EQ(::gethostbyname_r("nx.hook.test", &h, buf, sizeof buf, &res, &herr), 0);
    EXPECT_EQ(res, nullptr);
    EXPECT_EQ(herr, HOST_NOT_FOUND);
    EXPECT_EQ(errno, 0);
    res = &h;
    EXPECT_EQ(::gethostbyname_r("v6only.hook.test", &h, buf, sizeof buf, &res, &herr), 0);
    EXPECT_EQ(res, nullptr);
    EXPECT_EQ(herr, NO_DATA);
    res = &h;
    EXPECT_EQ(::gethostbyname_r("fail.hook.test", &h, buf, sizeof buf, &res, &herr), EAGAIN);
    EXPECT_EQ(res, nullptr);
    EXPECT_EQ(herr, TRY_AGAIN);
    EXPECT_EQ(errno, EAGAIN);
    res = &h;
    EXPECT_EQ(::gethostbyname_r("refused.hook.test", &h, buf, sizeof buf, &res, &herr), 0);
    EXPECT_EQ(res, nullptr);
    EXPECT_EQ(herr, NO_RECOVERY);
    // The non-reentrant forms report in h_errno.
    h_errno = 0;
    EXPECT_EQ(::gethostbyname("nx.hook.test"), nullptr);
    EXPECT_EQ(h_errno, HOST_NOT_FOUND);
    EXPECT_EQ(::gethostbyname2("fail.hook.test", AF_INET6), nullptr);
    EXPECT_EQ(h_errno, TRY_AGAIN);
    // An unknown family is glibc's error.
    EXPECT_EQ(::gethostbyname2("nx.hook.test", 12345), nullptr);
    EXPECT_EQ(errno, EAFNOSUPPORT);
  });
}

// gethostbyname's result lives in a per-thread buffer filled after the fiber resumes: two
// fibers of one thread looking up at once each read their own answer (until they park again).
TEST(Hook, GethostbynameResultIsTheCallersUntilItParksAgain) {
  fibers::run([] {
    hook_dns dns;
    dns.server.set("one.hook.test", {.a = {"10.0.0.1"}, .delay = 30ms});
    dns.server.set("other.hook.test", {.a = {"10.0.0.2"}, .delay = 10ms});
    std::vector<std::string> got_one, got_other;
    auto f1 = fibers::spawn([&] {
      const hostent* h = ::gethostbyname("one.hook.test");
      ASSERT_NE(h, nullptr);
      got_one = addresses(h);
    });
    auto f2 = fibers::spawn([&] {
      const hostent* h = ::gethostbyname2("other.hook.test", AF_INET);
      ASSERT_NE(h, nullptr);
      EXPECT_STREQ(h->h_name, "other.hook.test");
      got_other = addresses(h);
    });
    f1.join();
    f2.join();
    EXPECT_EQ(got_one, std::vector<std::string>{"10.0.0.1"});
    EXPECT_EQ(got_other, std::vector<std::string>{"10.0.0.2"});
  });
}

TEST(Hook, CanceledGethostbynameRFailsWithEcanceled) {
  fibers::run([] {
    hook_dns dns;
    dns.server.set("hang.hook.test", {.drop = true});
    int rc = 0, herr = 0, err = 0;
    hostent* res = nullptr;
    auto f = fibers::spawn([&] {
      hostent h{};
      char buf[512];
      res = &h;
      rc = ::gethostbyname_r("hang.hook.test", &h, buf, sizeof buf, &res, &herr);
      err = errno;
    });
    fibers::this_fiber::sleep_for(20ms);
    f.cancel();
    f.join();
    EXPECT_EQ(rc, ECANCELED);
    EXPECT_EQ(err, ECANCELED);
    EXPECT_EQ(herr, NETDB_INTERNAL);
    EXPECT_EQ(res, nullptr);
  });
}

TEST(Hook, GethostbynameOnAPlainThreadIsGlibc) {
  const auto g0 = parked(call::gethostbyname);
  std::thread([] {
    hostent h{}, *res = nullptr;
    char buf[1024];
    int herr = 0;
    ASSERT_EQ(::gethostbyname_r("localhost", &h, buf, sizeof buf, &res, &herr), 0);
    ASSERT_NE(res, nullptr);
    EXPECT_EQ(h.h_addrtype, AF_INET);
    const hostent* s = ::gethostbyname("localhost");
    ASSERT_NE(s, nullptr);
  }).join();
  // A fiber with the hook disabled is glibc too.
  fibers::run([] {
    fibers::hook::disable_scope off;
    ASSERT_NE(::gethostbyname("localhost"), nullptr);
  });
  EXPECT_EQ(parked(call::gethostbyname), g0);
}

TEST(Hook, GetnameinfoReverseLookupParksOnAFiberAndIsGlibcElsewhere) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(80);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const auto* sa = reinterpret_cast<const sockaddr*>(&a);
  char host[NI_MAXHOST], serv[NI_MAXSERV];
  // glibc's answer on this thread, to compare with.
  ASSERT_EQ(::getnameinfo(sa, sizeof a, host, sizeof host, serv, sizeof serv, 0), 0);
  const std::string glibc_host = host, glibc_serv = serv;
  const auto n0 = parked(call::getnameinfo);
  fibers::run([&] {
    fibers_test::heartbeat hb;
    errno = EDOM;
    std::memset(host, 0, sizeof host);
    ASSERT_EQ(::getnameinfo(sa, sizeof a, host, sizeof host, serv, sizeof serv, 0), 0);
    EXPECT_EQ(host, glibc_host);
    EXPECT_EQ(serv, glibc_serv);
    EXPECT_EQ(errno, 0);  // what glibc leaves
    EXPECT_EQ(parked(call::getnameinfo), n0 + 1);
    // Numeric: no lookup, glibc on the fiber's thread, not counted.
    ASSERT_EQ(::getnameinfo(sa, sizeof a, host, sizeof host, serv, sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV), 0);
    EXPECT_STREQ(host, "127.0.0.1");
    EXPECT_STREQ(serv, "80");
    EXPECT_EQ(parked(call::getnameinfo), n0 + 1);
    // A canceled fiber's lookup that has to wait fails at once: EAI_SYSTEM with ECANCELED. Every
    // thread of the default blocking pool (64) is kept busy, so the lookup waits in its queue
    // (a lookup that ran before the wait noticed the cancel would just succeed).
    std::atomic<bool> release{false};
    std::vector<fibers::future<int>> busy;
    for (int i = 0; i < 64; ++i) {
      busy.push_back(fibers::default_blocking_pool().async([&release] {
        while (!release.load()) std::this_thread::sleep_for(1ms);
        return 0;
      }));
    }
    int rc = 0, err = 0;
    auto f = fibers::spawn([&] {
      (void)::usleep(10'000'000);  // canceled: EINTR
      char h2[NI_MAXHOST];
      rc = ::getnameinfo(sa, sizeof a, h2, sizeof h2, nullptr, 0, NI_NAMEREQD);
      err = errno;
    });
    fibers::this_fiber::sleep_for(10ms);
    f.cancel();
    f.join();
    release = true;
    for (auto& b : busy) b.get();
    EXPECT_EQ(rc, EAI_SYSTEM);
    EXPECT_EQ(err, ECANCELED);
    hb.stop();
    EXPECT_LT(hb.max_gap(), fibers_test::stall_limit);
  });
  // Plain thread: glibc, not counted.
  const auto n1 = parked(call::getnameinfo);
  std::thread([&] {
    char h[NI_MAXHOST];
    ASSERT_EQ(::getnameinfo(sa, sizeof a, h, sizeof h, nullptr, 0, 0), 0);
    EXPECT_EQ(h, glibc_host);
  }).join();
  EXPECT_EQ(parked(call::getnameinfo), n1);
}

// gethostbyaddr(_r): glibc's own call on the blocking pool, the hostent moved into the caller's
// buffer. Compared with glibc's answer on a plain thread.
TEST(Hook, GethostbyaddrParksOnAFiberAndMatchesGlibc) {
  in_addr lo{htonl(INADDR_LOOPBACK)};
  hostent h{}, *res = nullptr;
  char buf[2048];
  int herr = 0;
  ASSERT_EQ(::gethostbyaddr_r(&lo, sizeof lo, AF_INET, &h, buf, sizeof buf, &res, &herr), 0);
  ASSERT_NE(res, nullptr);
  const std::string glibc_name = h.h_name;
  const auto glibc_addrs = addresses(&h);
  const auto n0 = parked(call::getnameinfo);
  fibers::run([&] {
    fibers_test::heartbeat hb;
    hostent fh{}, *fres = nullptr;
    // An odd size and a start 8 bytes past a 16-byte boundary: the copy from the pool's buffer
    // keeps the alignment glibc gave its pointer lists. (An odd start works too, but glibc
    // then leaves the lists unaligned, and reading them here is undefined behaviour that
    // UBSan reports.)
    alignas(16) char fbuf[1024 + 8 + 3];
    int fherr = -1;
    errno = EDOM;
    ASSERT_EQ(::gethostbyaddr_r(&lo, sizeof lo, AF_INET, &fh, fbuf + 8, 1024 + 3, &fres, &fherr), 0);
    ASSERT_EQ(fres, &fh);
    EXPECT_EQ(errno, 0);
    EXPECT_EQ(fh.h_name, glibc_name);
    EXPECT_EQ(addresses(&fh), glibc_addrs);
    EXPECT_EQ(fh.h_addrtype, AF_INET);
    EXPECT_GE(fh.h_name, fbuf);  // points into the caller's buffer, not the pool's
    EXPECT_LT(fh.h_name, fbuf + sizeof fbuf);
    EXPECT_EQ(parked(call::getnameinfo), n0 + 1);
    // A buffer too small: ERANGE, as glibc.
    char small[8];
    EXPECT_EQ(::gethostbyaddr_r(&lo, sizeof lo, AF_INET, &fh, small, sizeof small, &fres, &fherr), ERANGE);
    EXPECT_EQ(fres, nullptr);
    // The non-reentrant form (per-thread buffer, grown as needed).
    const hostent* s = ::gethostbyaddr(&lo, sizeof lo, AF_INET);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->h_name, glibc_name);
    // A wrong length is glibc's error at once, not counted.
    const auto n1 = parked(call::getnameinfo);
    EXPECT_EQ(::gethostbyaddr(&lo, 3, AF_INET), nullptr);
    EXPECT_EQ(parked(call::getnameinfo), n1);
    hb.stop();
    EXPECT_LT(hb.max_gap(), fibers_test::stall_limit);
  });
  const auto n2 = parked(call::getnameinfo);
  ASSERT_NE(::gethostbyaddr(&lo, sizeof lo, AF_INET), nullptr);  // plain thread: glibc
  EXPECT_EQ(parked(call::getnameinfo), n2);
}

}  // namespace
