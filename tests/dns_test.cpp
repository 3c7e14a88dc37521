// tests/dns_test.cpp - fibers::dns::resolve against a scripted DNS server on 127.0.0.1
// (dns_test_server.hpp) and a test hosts file; connect by name with Happy Eyeballs.
// Hermetic: every query goes to 127.0.0.1, every connection to loopback.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "dns_test_server.hpp"
#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using fibers::dns_errc;
using fibers::endpoint;
using fibers_test::dns_rule;
using fibers_test::dns_server;
namespace dns = fibers::dns;

/// The hosts file c-ares reads in this test (CARES_HOSTS), written before any test runs.
const std::string& hosts_file() {
  static const std::string path = [] {
    std::string p = (std::filesystem::temp_directory_path() / ("fibers-dns-test-hosts-" + std::to_string(::getpid()))).string();
    std::ofstream(p) << "127.0.0.1 localhost\n"
                        "10.1.2.3 filehost.test filealias.test\n"
                        "fd00::1234 filehost6.test\n";
    ::setenv("CARES_HOSTS", p.c_str(), 1);
    return p;
  }();
  return path;
}
struct hosts_env : ::testing::Environment {
  void SetUp() override { hosts_file(); }
  void TearDown() override { std::filesystem::remove(hosts_file()); }
};
[[maybe_unused]] auto* const env = ::testing::AddGlobalTestEnvironment(new hosts_env);

std::vector<std::string> strings(const std::vector<endpoint>& eps) {
  std::vector<std::string> out;
  for (const auto& e : eps) out.push_back(e.to_string());
  return out;
}

/// A port on 127.0.0.1 (and ::1) where nothing listens for UDP.
std::uint16_t dead_udp_port() {
  auto u = fibers::udp_socket::bind(endpoint::loopback_v4(0));
  return u.local_endpoint().port();  // closed again at return
}

int tasks() {
  int n = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

TEST(DnsErrc, CategoryNamesAndConditions) {
  std::error_code ec = dns_errc::no_such_host;
  EXPECT_STREQ(ec.category().name(), "dns");
  EXPECT_EQ(ec.message(), "no such host");
  std::error_code t = dns_errc::timeout;
  EXPECT_TRUE(t == std::errc::timed_out);  // a timeout to generic code...
  EXPECT_TRUE(t != std::make_error_code(std::errc::timed_out));  // ...but not the caller's deadline
  EXPECT_TRUE(std::error_code(dns_errc::no_server) == std::errc::connection_refused);
  EXPECT_NE(std::error_code(dns_errc::server_failure), std::error_code(dns_errc::refused));
}

TEST(Dns, NumericAndLocalhostAnswerWithoutAQuery) {
  fibers::run([] {
    dns_server server;
    auto o = server.options();
    EXPECT_EQ(strings(dns::resolve("127.0.0.1", "80", o)), std::vector<std::string>{"127.0.0.1:80"});
    EXPECT_EQ(strings(dns::resolve("::1", 443, o)), std::vector<std::string>{"[::1]:443"});
    EXPECT_EQ(strings(dns::resolve("[::1]", "", o)), std::vector<std::string>{"[::1]:0"});
    EXPECT_EQ(strings(dns::resolve("localhost", "http", o)), (std::vector<std::string>{"[::1]:80", "127.0.0.1:80"}));
    EXPECT_EQ(strings(dns::resolve("db.localhost.", 5, o)), (std::vector<std::string>{"[::1]:5", "127.0.0.1:5"}));
    o.prefer_ipv4 = true;
    EXPECT_EQ(strings(dns::resolve("LocalHost", 5, o)), (std::vector<std::string>{"127.0.0.1:5", "[::1]:5"}));
    o.families = dns::family::ipv6;
    EXPECT_EQ(strings(dns::resolve("localhost", 5, o)), std::vector<std::string>{"[::1]:5"});
    std::error_code ec;
    EXPECT_TRUE(dns::resolve("10.0.0.1", 5, ec, o).empty());
    EXPECT_EQ(ec, dns_errc::no_data);
    EXPECT_EQ(server.queries(), 0u);
  });
}

TEST(Dns, BadNamesAndServicesFailBeforeAnyQuery) {
  fibers::run([] {
    dns_server server;
    const auto o = server.options();
    const std::string label64(64, 'a');
    std::string long_name;
    while (long_name.size() < 254) long_name += "abcdefghi.";
    long_name.pop_back();
    for (std::string bad : {std::string(""), label64 + ".test", long_name, std::string("a..test"), std::string("."),
                            std::string(".test"), std::string("a\0b.test", 8), std::string("fe80::1%nosuchif0")}) {
      std::error_code ec;
      EXPECT_TRUE(dns::resolve(bad, 80, ec, o).empty());
      EXPECT_EQ(ec, dns_errc::bad_name) << bad;
    }
    // 63-byte labels and 253 bytes are fine (answered NXDOMAIN by the server).
    std::string ok_name = std::string(63, 'b') + "." + std::string(63, 'c') + "." + std::string(63, 'd') + "." +
                          std::string(61, 'e');
    ASSERT_EQ(ok_name.size(), 253u);
    std::error_code ec;
    dns::resolve(ok_name, 80, ec, o);
    EXPECT_EQ(ec, dns_errc::no_such_host);
    EXPECT_GT(server.queries(), 0u);
    const auto sent = server.queries();
    dns::resolve("a.test", "no-such-service", ec, o);
    EXPECT_EQ(ec, dns_errc::bad_service);
    dns::resolve("a.test", "70000", ec, o);
    EXPECT_EQ(ec, dns_errc::bad_service);
    EXPECT_EQ(server.queries(), sent);
    try {
      dns::resolve("a..test", 80, o);
      ADD_FAILURE() << "no exception";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), dns_errc::bad_name);
      EXPECT_EQ(std::string(e.what()), "resolve a..test (empty label): invalid host name");
    }
  });
}

TEST(Dns, AnswersAAndAaaaInFamilyOrder) {
  fibers::run([] {
    dns_server server;
    server.set("both.test", {.a = {"10.0.0.1", "10.0.0.2"}, .aaaa = {"fd00::2"}});
    auto o = server.options();
    EXPECT_EQ(strings(dns::resolve("both.test", "443", o)),
              (std::vector<std::string>{"[fd00::2]:443", "10.0.0.1:443", "10.0.0.2:443"}));
    EXPECT_EQ(strings(dns::resolve("BOTH.test.", "443", o)).size(), 3u);
    o.prefer_ipv4 = true;
    EXPECT_EQ(strings(dns::resolve("both.test", 1, o)), (std::vector<std::string>{"10.0.0.1:1", "10.0.0.2:1", "[fd00::2]:1"}));
    o.families = dns::family::ipv4;
    EXPECT_EQ(strings(dns::resolve("both.test", 1, o)), (std::vector<std::string>{"10.0.0.1:1", "10.0.0.2:1"}));
    o.families = dns::family::ipv6;
    EXPECT_EQ(strings(dns::resolve("both.test", 1, o)), (std::vector<std::string>{"[fd00::2]:1"}));
  });
}

TEST(Dns, AnswerReportsTheSmallestTtlAndNoneWithoutDnsRecords) {
  fibers::run([] {
    dns_server server;
    server.set("ttl.test", {.a = {"10.0.0.1", "10.0.0.2"}, .ttl = 7});
    server.set("mixed.test", {.a = {"10.0.0.3"}, .aaaa = {"fd00::3"}, .ttl = 300, .aaaa_ttl = 42});
    server.set("zero.test", {.a = {"10.0.0.4"}, .ttl = 0});
    const auto o = server.options();
    dns::answer a = dns::resolve_answer("ttl.test", 80, o);
    EXPECT_EQ(strings(a.endpoints), (std::vector<std::string>{"10.0.0.1:80", "10.0.0.2:80"}));
    ASSERT_TRUE(a.ttl.has_value());
    EXPECT_EQ(*a.ttl, 7s);
    a = dns::resolve_answer("mixed.test", 80, o);  // the AAAA records expire first
    EXPECT_EQ(a.endpoints.size(), 2u);
    EXPECT_EQ(a.ttl, std::optional<std::chrono::seconds>(42s));
    a = dns::resolve_answer("zero.test", 80, o);  // 0 is a TTL ("do not keep"), not "none"
    EXPECT_EQ(a.ttl, std::optional<std::chrono::seconds>(0s));
    // No DNS record answered: no TTL.
    for (const char* host : {"10.9.9.9", "::1", "localhost", "filehost.test"}) {
      a = dns::resolve_answer(host, 80, o);
      EXPECT_EQ(a.endpoints.size(), std::string_view(host) == "localhost" ? 2u : 1u) << host;
      EXPECT_FALSE(a.ttl.has_value()) << host;
    }
    EXPECT_EQ(server.queries(), 6u);  // A and AAAA for each DNS name, nothing for the rest
    auto gai = o;
    gai.servers.clear();
    gai.backend = dns::backend::getaddrinfo;
    a = dns::resolve_answer("localhost", 80, gai);
    EXPECT_FALSE(a.endpoints.empty());
    EXPECT_FALSE(a.ttl.has_value());
    std::error_code ec;
    a = dns::resolve_answer("nosuch.test", 80, ec, o);
    EXPECT_EQ(ec, dns_errc::no_such_host);
    EXPECT_TRUE(a.endpoints.empty());
    EXPECT_FALSE(a.ttl.has_value());
    EXPECT_THROW(dns::resolve_answer("nosuch.test", 80, o), std::system_error);
  });
}

TEST(Dns, ServerAnswersMapToDistinctErrors) {
  fibers::run([] {
    dns_server server;
    server.set("fail.test", {.rcode = 2});
    server.set("refused.test", {.rcode = 5});
    server.set("v4only.test", {.a = {"10.0.0.9"}});
    const auto o = server.options();
    std::error_code ec;
    dns::resolve("nosuch.test", 80, ec, o);
    EXPECT_EQ(ec, dns_errc::no_such_host);
    dns::resolve("fail.test", 80, ec, o);
    EXPECT_EQ(ec, dns_errc::server_failure);
    dns::resolve("refused.test", 80, ec, o);
    EXPECT_EQ(ec, dns_errc::refused);
    auto v6 = o;
    v6.families = dns::family::ipv6;
    dns::resolve("v4only.test", 80, ec, v6);
    EXPECT_EQ(ec, dns_errc::no_data);
    EXPECT_EQ(dns::resolve("v4only.test", 80, ec, o).size(), 1u);  // AAAA empty, A answers
    EXPECT_FALSE(ec);
    try {
      dns::resolve("nosuch.test", 80, o);
      ADD_FAILURE() << "no exception";
    } catch (const std::system_error& e) {
      EXPECT_EQ(std::string(e.what()), "resolve nosuch.test: no such host");
    }
    // A server list c-ares cannot parse is the caller's mistake, in both forms.
    auto bad = o;
    bad.servers = {"not a server"};
    EXPECT_THROW(dns::resolve("x.test", 80, ec, bad), std::invalid_argument);
  });
}

TEST(Dns, SilentServerIsADnsTimeoutAndNoServerIsNoServer) {
  fibers::run([] {
    dns_server server;
    server.set("silent.test", {.drop = true});
    std::error_code ec;
    dns::resolve("silent.test", 80, ec, server.options(150ms, 2));
    EXPECT_EQ(ec, dns_errc::timeout);
    EXPECT_EQ(server.queries_for("silent.test"), 4u);  // A and AAAA, two tries each
    auto o = server.options();
    o.servers = {"127.0.0.1:" + std::to_string(dead_udp_port())};
    // One query: with A and AAAA on one socket, the second send consumes the ICMP error of
    // the first, which then times out (c-ares 1.18; see docs/DESIGN.md, DNS).
    o.families = dns::family::ipv4;
    dns::resolve("any.test", 80, ec, o);
    EXPECT_EQ(ec, dns_errc::no_server);
  });
}

TEST(Dns, TruncatedAnswerIsFetchedOverTcpAndDelayedOnesArrive) {
  fibers::run([] {
    dns_server server;
    server.set("big.test", {.a = {"10.0.0.7"}, .aaaa = {"fd00::7"}, .truncate = true});
    server.set("slow.test", {.a = {"10.0.0.8"}, .delay = 50ms});
    EXPECT_EQ(strings(dns::resolve("big.test", 1, server.options())),
              (std::vector<std::string>{"[fd00::7]:1", "10.0.0.7:1"}));
    EXPECT_GE(server.tcp_queries(), 2u);
    EXPECT_EQ(strings(dns::resolve("slow.test", 1, server.options())), std::vector<std::string>{"10.0.0.8:1"});
  });
}

TEST(Dns, HostsFileAnswersWithoutAQuery) {
  fibers::run([] {
    dns_server server;
    auto o = server.options();
    EXPECT_EQ(strings(dns::resolve("filehost.test", 1, o)), std::vector<std::string>{"10.1.2.3:1"});
    EXPECT_EQ(strings(dns::resolve("FileAlias.test", 1, o)), std::vector<std::string>{"10.1.2.3:1"});
    o.families = dns::family::ipv6;
    EXPECT_EQ(strings(dns::resolve("filehost6.test", 1, o)), std::vector<std::string>{"[fd00::1234]:1"});
    EXPECT_EQ(server.queries(), 0u);
  });
}

TEST(Dns, DeadlineAndCancelWhileAQueryIsInFlight) {
  fibers::run([] {
    dns_server server;
    server.set("silent.test", {.drop = true});
    server.set("ok.test", {.a = {"10.0.0.1"}});
    const auto o = server.options(400ms);  // c-ares gives up after 400 ms
    // The caller's deadline: std::errc::timed_out, not dns_errc::timeout.
    // (c-ares' own give-up would be dns_errc::timeout: this one is the caller's deadline.)
    std::error_code ec;
    dns::resolve("silent.test", 80, ec, o, 50ms);
    EXPECT_EQ(ec, std::make_error_code(std::errc::timed_out));
    // The inherited deadline, throwing form.
    EXPECT_THROW(fibers::with_deadline(50ms, [&] { dns::resolve("silent.test", 80, o); }), std::system_error);
    // Cancel while parked in resolve, once the server has seen the query.
    const auto seen = server.queries_for("silent.test");
    std::error_code got;
    auto f = fibers::spawn([&] { dns::resolve("silent.test", 80, got, o); });
    while (server.queries_for("silent.test") == seen) fibers::this_fiber::sleep_for(1ms);
    f.cancel();
    f.join();
    EXPECT_EQ(got, fibers::errc::canceled);
    auto g = fibers::spawn([&] { dns::resolve("silent.test", 80, o); });
    fibers::this_fiber::yield();
    g.cancel();
    EXPECT_THROW(g.join(), fibers::canceled);
    // The abandoned queries end in c-ares later (their records are freed then, off every
    // fiber's stack); the channel goes on answering.
    fibers::this_fiber::sleep_for(450ms);
    EXPECT_EQ(strings(dns::resolve("ok.test", 1, o)), std::vector<std::string>{"10.0.0.1:1"});
  });
}

TEST(Dns, TenThousandConcurrentLookupsOnOneThreadNoneLostNoThreadCreated) {
  fibers::runtime rt(2);
  rt.run([] {
    dns_server server(1);  // answers on thread 1; the lookups run on thread 0
    server.set_fallback({.a = {"10.0.0.1"}, .aaaa = {"fd00::1"}});
    const auto o = server.options(5000ms, 3);
    dns::resolve("warm.test", 1, o);  // the channel and its socket exist
    const int before = tasks();
#if defined(__SANITIZE_THREAD__)
    constexpr int n = 1'000;  // TSan: each live fiber counts as a thread (limit 8,128), and is slow
#else
    constexpr int n = 10'000;
#endif
    int ok = 0;
    std::error_code first;
    {
      fibers::wait_group wg;
      wg.add(n);
      for (int i = 0; i < n; ++i) {
        fibers::spawn([&, i] {
          std::error_code ec;
          auto eps = dns::resolve("h" + std::to_string(i) + ".test", 80, ec, o);
          if (!ec && eps.size() == 2) ++ok;
          else if (!first) first = ec;
          wg.done();
        }).detach();
      }
      wg.wait();
    }
    EXPECT_EQ(ok, n) << first.message();
    EXPECT_EQ(tasks(), before);
    EXPECT_EQ(server.queries_for("h" + std::to_string(n - 1) + ".test"), 2u);
  });
}

TEST(Dns, EveryIoThreadResolvesOnItsOwnChannel) {
  fibers::runtime rt(2);
  rt.run([&rt] {
    dns_server server(0);
    server.set_fallback({.a = {"10.0.0.3"}});
    const auto o = server.options();
    std::atomic<int> ok{0};
    auto lookups = [&](int thread) {
      fibers::wait_group wg;
      wg.add(200);
      for (int i = 0; i < 200; ++i) {
        fibers::spawn([&, i] {
          std::error_code ec;
          if (dns::resolve("t" + std::to_string(thread) + "-" + std::to_string(i) + ".test", 1, ec, o).size() == 1) ++ok;
          wg.done();
        }).detach();
      }
      wg.wait();
    };
    auto other = rt.spawn_on(1, [&] { lookups(1); });
    lookups(0);
    other.join();
    EXPECT_EQ(ok.load(), 400);
  });
}

TEST(Dns, GetaddrinfoBackendAndPlainThreads) {
  fibers::run([] {
    dns::options o;
    o.backend = dns::backend::getaddrinfo;
    o.families = dns::family::ipv4;
    auto eps = dns::resolve("localhost", 80, o);  // /etc/hosts through nsswitch
    ASSERT_FALSE(eps.empty());
    EXPECT_EQ(eps.front().to_string(), "127.0.0.1:80");
    std::error_code ec;
    dns::resolve("a..b", 80, ec, o);
    EXPECT_EQ(ec, dns_errc::bad_name);
  });
  // Not on a fiber: getaddrinfo on the blocking pool; c-ares-only options are misuse.
  EXPECT_EQ(dns::resolve("127.0.0.1", 5).front().to_string(), "127.0.0.1:5");
  dns::options v4;
  v4.families = dns::family::ipv4;
  v4.backend = dns::backend::getaddrinfo;
  EXPECT_EQ(dns::resolve("localhost", 5, v4).front().to_string(), "127.0.0.1:5");
  dns::options servers;
  servers.servers = {"127.0.0.1:53"};
  EXPECT_THROW(dns::resolve("x.test", 5, servers), std::logic_error);
}

TEST(Dns, ShutdownWithLookupsInFlightFreesEverything) {
  fibers::runtime rt(1);
  rt.run([] {
    dns_server s;
    s.set("silent.test", {.drop = true});
    for (int i = 0; i < 3; ++i) {
      fibers::spawn([o = s.options(5000ms)] {
        std::error_code ec;
        dns::resolve("silent.test", 80, ec, o);
      }).detach();
    }
    while (s.queries_for("silent.test") < 6) fibers::this_fiber::sleep_for(1ms);
  });
  // rt's destructor cancels the detached lookups and ends thread 0, whose channel (with
  // queries in flight) is destroyed then: ASan reports a leak or a use after free.
}

// --- connect by name ---------------------------------------------------------------------

/// A raw listening socket on `ep` with backlog `backlog`; -1 on failure.
int raw_listener(const endpoint& ep, int backlog) {
  int fd = ::socket(ep.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  if (ep.family() == AF_INET6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (::bind(fd, ep.data(), ep.size()) != 0 || ::listen(fd, backlog) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

TEST(HappyEyeballs, RefusedIpv6FallsBackToIpv4AtOnce) {
  fibers::run([] {
    dns_server server;
    auto l = fibers::tcp_listener::bind(endpoint::loopback_v4(0));
    const auto port = l.local_endpoint().port();
    server.set("svc.test", {.a = {"127.0.0.1"}, .aaaa = {"::1"}});  // nothing on [::1]:port
    auto s = fibers::tcp_stream::connect("svc.test", port, server.options(), 5s);
    EXPECT_EQ(s.peer_endpoint(), endpoint::loopback_v4(port));
    auto peer = l.accept(5s);
    s.write_all("x");
    char c;
    peer.read_exact({&c, 1});
    EXPECT_EQ(c, 'x');
    // The same race over a list of addresses (a cached answer), without a lookup.
    const std::size_t queries = server.queries();
    auto t = fibers::tcp_stream::connect(std::vector<endpoint>{endpoint::loopback_v6(port), endpoint::loopback_v4(port)}, 5s);
    EXPECT_EQ(t.peer_endpoint(), endpoint::loopback_v4(port));
    EXPECT_EQ(server.queries(), queries);
    std::error_code ec;
    fibers::tcp_stream::connect(std::vector<endpoint>{}, ec, 1s);
    EXPECT_EQ(ec, std::errc::invalid_argument);
    try {
      fibers::tcp_stream::connect(std::vector<endpoint>{endpoint::loopback_v6(port)}, 5s);
      ADD_FAILURE() << "connected";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::connection_refused);
      EXPECT_EQ(std::string(e.what()).rfind("connect [::1]:" + std::to_string(port) + ":", 0), 0u) << e.what();
    }
  });
}

TEST(HappyEyeballs, BlackholedIpv6LosesToIpv4AfterTheStagger) {
  fibers::run([] {
    dns_server server;
    auto l = fibers::tcp_listener::bind(endpoint::loopback_v4(0));
    const auto port = l.local_endpoint().port();
    // [::1]:port with backlog 0 and one connection queued: Linux drops further SYNs while the
    // accept queue is full, so a connect there never completes (a blackhole on loopback).
    const int hole = raw_listener(endpoint::loopback_v6(port), 0);
    ASSERT_GE(hole, 0);
    auto filler = fibers::tcp_stream::connect(endpoint::loopback_v6(port), 5s);
    std::error_code ec;
    fibers::tcp_stream::connect(endpoint::loopback_v6(port), ec, 300ms);
    ASSERT_EQ(ec, std::make_error_code(std::errc::timed_out)) << "the blackhole does not hold here: " << ec.message();

    server.set("svc.test", {.a = {"127.0.0.1"}, .aaaa = {"::1"}});
    auto s = fibers::tcp_stream::connect("svc.test", port, server.options(), 5s);
    EXPECT_EQ(s.peer_endpoint(), endpoint::loopback_v4(port));

    // Only the blackhole: the one overall deadline ends the call, naming no address.
    server.set("hole.test", {.aaaa = {"::1"}});
    auto start = fibers::clock::now();
    fibers::tcp_stream::connect("hole.test", port, server.options(), ec, 300ms);
    EXPECT_EQ(ec, std::make_error_code(std::errc::timed_out));
    EXPECT_GE(fibers_test::ms_since(start), 250ms);
    ::close(hole);
  });
}

TEST(HappyEyeballs, AllAddressesFailingReportsTheFirstFailureNamingTheHost) {
  fibers::run([] {
    dns_server server;
    const auto port = dead_udp_port();  // very likely no TCP listener either
    server.set("down.test", {.a = {"127.0.0.1"}, .aaaa = {"::1"}});
    try {
      fibers::tcp_stream::connect("down.test", port, server.options(), 5s);
      ADD_FAILURE() << "connected";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::connection_refused);
      const std::string what = e.what();
      EXPECT_EQ(what.rfind("connect down.test:" + std::to_string(port) + " (", 0), 0u) << what;
    }
    try {
      fibers::tcp_stream::connect("nosuch.test", 80, server.options(), 5s);
      ADD_FAILURE() << "connected";
    } catch (const std::system_error& e) {
      EXPECT_EQ(std::string(e.what()), "connect nosuch.test:80: resolve nosuch.test: no such host");
    }
    std::error_code ec;
    fibers::tcp_stream::connect("no-port-here", ec);
    EXPECT_EQ(ec, std::errc::invalid_argument);
  });
}

TEST(HappyEyeballs, HostPortFormAndUdpSendToByName) {
  fibers::run([] {
    auto l = fibers::tcp_listener::bind(endpoint::loopback_v4(0));
    const auto port = l.local_endpoint().port();
    auto s = fibers::tcp_stream::connect("127.0.0.1:" + std::to_string(port), 5s);
    EXPECT_EQ(s.peer_endpoint(), endpoint::loopback_v4(port));
    auto a = fibers::udp_socket::bind(endpoint::loopback_v4(0));
    auto b = fibers::udp_socket::bind(endpoint::loopback_v4(0));
    EXPECT_EQ(a.send_to("hi", "localhost", b.local_endpoint().port(), 5s), 2u);
    char buf[8];
    endpoint from;
    EXPECT_EQ(std::string(buf, b.recv_from(buf, from, 5s)), "hi");
  });
}

}  // namespace
