// tests/endpoint_test.cpp - parsing, formatting and comparing socket addresses.
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace {

TEST(Endpoint, ParsesAndFormatsIpv4) {
  fibers::run([] {
    auto ep = fibers::endpoint::parse("127.0.0.1:8080");
    EXPECT_EQ(ep.family(), AF_INET);
    EXPECT_EQ(ep.port(), 8080);
    EXPECT_EQ(ep.address(), "127.0.0.1");
    EXPECT_EQ(ep.to_string(), "127.0.0.1:8080");
    ASSERT_EQ(ep.size(), sizeof(sockaddr_in));
    const auto* sin = reinterpret_cast<const sockaddr_in*>(ep.data());
    EXPECT_EQ(sin->sin_family, AF_INET);
    EXPECT_EQ(ntohs(sin->sin_port), 8080);
    EXPECT_EQ(ntohl(sin->sin_addr.s_addr), 0x7f000001u);
    EXPECT_EQ(ep, fibers::endpoint::loopback_v4(8080));
  });
}

TEST(Endpoint, ParsesAndFormatsIpv6InBrackets) {
  fibers::run([] {
    auto ep = fibers::endpoint::parse("[::1]:80");
    EXPECT_EQ(ep.family(), AF_INET6);
    EXPECT_EQ(ep.port(), 80);
    EXPECT_EQ(ep.address(), "::1");
    EXPECT_EQ(ep.to_string(), "[::1]:80");
    ASSERT_EQ(ep.size(), sizeof(sockaddr_in6));
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(ep.data());
    EXPECT_EQ(ntohs(sin6->sin6_port), 80);
    EXPECT_EQ(std::memcmp(&sin6->sin6_addr, &in6addr_loopback, sizeof(in6_addr)), 0);
    EXPECT_EQ(ep, fibers::endpoint::loopback_v6(80));

    auto full = fibers::endpoint::parse("[2001:db8::7]:65535");
    EXPECT_EQ(full.port(), 65535);
    EXPECT_EQ(full.address(), "2001:db8::7");
    EXPECT_EQ(full.to_string(), "[2001:db8::7]:65535");
  });
}

TEST(Endpoint, ParsesAndFormatsUnixPaths) {
  fibers::run([] {
    auto ep = fibers::endpoint::parse("unix:/tmp/x");
    EXPECT_EQ(ep.family(), AF_UNIX);
    EXPECT_EQ(ep.port(), 0);
    EXPECT_EQ(ep.address(), "/tmp/x");
    EXPECT_EQ(ep.to_string(), "unix:/tmp/x");
    const auto* sun = reinterpret_cast<const sockaddr_un*>(ep.data());
    EXPECT_STREQ(sun->sun_path, "/tmp/x");
    EXPECT_EQ(ep, fibers::endpoint::unix_path("/tmp/x"));
  });
}

TEST(Endpoint, ToStringRoundTripsThroughParse) {
  fibers::run([] {
    for (const char* text : {"0.0.0.0:0", "10.1.2.3:1", "255.255.255.255:65535", "[::]:0",
                             "[::1]:8080", "[fe80::1:2]:443", "[fe80::1%lo]:80",
                             "unix:/run/fibers.sock", "unix:@fibers.sock"}) {
      auto ep = fibers::endpoint::parse(text);
      EXPECT_EQ(ep.to_string(), text);
      EXPECT_EQ(fibers::endpoint::parse(ep.to_string()), ep) << text;
      // from_sockaddr (what accept/recvfrom produce) gives back an equal endpoint.
      EXPECT_EQ(fibers::endpoint::from_sockaddr(ep.data(), ep.size()), ep) << text;
    }
  });
}

TEST(Endpoint, MalformedInputThrowsInvalidArgumentNamingTheInput) {
  fibers::run([] {
    const std::vector<std::string> bad = {
        "",        "1.2.3.4",  "1.2.3.4:", "1.2.3.4:99999", "300.1.1.1:80", "[::1:80",
        "::1:80",  "host:80",  "1.2.3.4:8x", "1.2.3.4:-1",  "[::1]",        "[::1]:",
        "unix:",   "unix:@",   "[fe80::1%]:80", "1.2.3.4%lo:80", "[fe80::1%99999999999]:80",
        "[fe80::1%nosuch0]:80", "(none)", "(unnamed unix)"};
    for (const auto& text : bad) {
      try {
        auto ep = fibers::endpoint::parse(text);
        ADD_FAILURE() << "parse(\"" << text << "\") accepted it as " << ep.to_string();
      } catch (const std::invalid_argument& e) {
        std::string what = e.what();
        EXPECT_NE(what.find(text), std::string::npos)
            << "message does not name the input \"" << text << "\": " << what;
        EXPECT_GT(what.size(), text.size()) << "message says nothing beyond the input";
      }
    }
  });
}

TEST(Endpoint, TryParseReturnsFalseAndDescribesTheError) {
  fibers::run([] {
    fibers::endpoint ep;
    std::string error;
    EXPECT_FALSE(fibers::endpoint::try_parse("1.2.3.4:99999", ep, &error));
    EXPECT_FALSE(error.empty());
    error.clear();
    EXPECT_FALSE(fibers::endpoint::try_parse("host:80", ep, &error));
    EXPECT_FALSE(error.empty());
    EXPECT_FALSE(fibers::endpoint::try_parse("[::1:80", ep));  // error pointer is optional

    EXPECT_TRUE(fibers::endpoint::try_parse("[::1]:9", ep, &error));
    EXPECT_EQ(ep, fibers::endpoint::loopback_v6(9));
  });
}

TEST(Endpoint, UnixPathLongerThan107BytesIsRejected) {
  fibers::run([] {
    std::string ok_path = "/" + std::string(106, 'a');  // 107 bytes: the most that fits
    auto ep = fibers::endpoint::unix_path(ok_path);
    EXPECT_EQ(ep.address(), ok_path);
    EXPECT_EQ(fibers::endpoint::parse("unix:" + ok_path), ep);

    std::string long_path = ok_path + "b";  // 108 bytes
    EXPECT_THROW(fibers::endpoint::unix_path(long_path), std::invalid_argument);
    EXPECT_THROW(fibers::endpoint::parse("unix:" + long_path), std::invalid_argument);
    fibers::endpoint out;
    EXPECT_FALSE(fibers::endpoint::try_parse("unix:" + long_path, out));
  });
}

TEST(Endpoint, DefaultEndpointIsEmpty) {
  fibers::run([] {
    fibers::endpoint ep;
    EXPECT_EQ(ep.family(), AF_UNSPEC);
    EXPECT_EQ(ep.to_string(), "(none)");
    EXPECT_EQ(ep, fibers::endpoint());
    EXPECT_FALSE(ep == fibers::endpoint::loopback_v4(0));
  });
}

TEST(Endpoint, IpBuildsFromAddressAndPortAndWithPortReplacesIt) {
  fibers::run([] {
    EXPECT_EQ(fibers::endpoint::ip("10.0.0.1", 5).to_string(), "10.0.0.1:5");
    EXPECT_EQ(fibers::endpoint::ip("::1", 80), fibers::endpoint::loopback_v6(80));
    auto ep = fibers::endpoint::parse("192.168.1.2:100");
    auto moved = ep.with_port(200);
    EXPECT_EQ(moved.to_string(), "192.168.1.2:200");
    EXPECT_EQ(ep.port(), 100);
    EXPECT_FALSE(ep == moved);  // equality compares ports too
    EXPECT_EQ(fibers::endpoint::loopback_v6(1).with_port(2).to_string(), "[::1]:2");
  });
}

TEST(Endpoint, ParsesAndFormatsAbstractUnixNames) {
  fibers::run([] {
    auto ep = fibers::endpoint::parse("unix:@fibers-abstract");
    EXPECT_EQ(ep.family(), AF_UNIX);
    EXPECT_EQ(ep.port(), 0);
    EXPECT_EQ(ep.address(), "@fibers-abstract");
    EXPECT_EQ(ep.to_string(), "unix:@fibers-abstract");
    // The kernel's form: a leading NUL, the name, and a length that ends at the name.
    const std::string name = "fibers-abstract";
    const auto* sun = reinterpret_cast<const sockaddr_un*>(ep.data());
    EXPECT_EQ(sun->sun_path[0], '\0');
    EXPECT_EQ(std::string(sun->sun_path + 1, name.size()), name);
    EXPECT_EQ(ep.size(), offsetof(sockaddr_un, sun_path) + 1 + name.size());
    EXPECT_EQ(ep, fibers::endpoint::unix_path("@fibers-abstract"));
    EXPECT_EQ(fibers::endpoint::from_sockaddr(ep.data(), ep.size()), ep);
    // Every byte of an abstract name counts: "x" and "x\0" are different names.
    auto with_nul = fibers::endpoint::from_sockaddr(ep.data(), ep.size() + 1);
    EXPECT_FALSE(with_nul == ep);
    EXPECT_EQ(with_nul.address(), "@" + name + std::string(1, '\0'));
    EXPECT_FALSE(ep == fibers::endpoint::unix_path("fibers-abstract"));  // a relative path
    EXPECT_FALSE(ep == fibers::endpoint::parse("unix:@fibers-abstract2"));
    // A relative file whose name starts with '@' is written "./@x".
    EXPECT_EQ(fibers::endpoint::parse("unix:./@x").to_string(), "unix:./@x");
  });
}

TEST(Endpoint, AbstractUnixNameLongerThan107BytesIsRejectedNamingTheInput) {
  fibers::run([] {
    const std::string ok = "@" + std::string(107, 'n');  // the whole sun_path after its NUL
    auto ep = fibers::endpoint::parse("unix:" + ok);
    EXPECT_EQ(ep.address(), ok);
    EXPECT_EQ(ep.size(), sizeof(sockaddr_un));
    EXPECT_EQ(fibers::endpoint::unix_path(ok), ep);
    const std::string too_long = ok + "x";
    for (const std::string& text : {"unix:" + too_long, too_long}) {
      try {
        auto bad = text.starts_with("unix:") ? fibers::endpoint::parse(text)
                                             : fibers::endpoint::unix_path(text);
        ADD_FAILURE() << "accepted a 108-byte abstract name as " << bad.to_string();
      } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("107"), std::string::npos) << e.what();
      }
    }
    fibers::endpoint out;
    EXPECT_FALSE(fibers::endpoint::try_parse("unix:" + too_long, out));
    EXPECT_THROW(fibers::endpoint::unix_path("@"), std::invalid_argument);
  });
}

TEST(Endpoint, UnnamedUnixSocketIsShownWithoutReadingPastItsLength) {
  fibers::run([] {
    // accept() of an unbound client gives just the family: sizeof(sa_family_t) bytes.
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memset(sa.sun_path, 'G', sizeof sa.sun_path);  // garbage beyond the length
    const auto* raw = reinterpret_cast<const sockaddr*>(&sa);
    auto ep = fibers::endpoint::from_sockaddr(raw, sizeof(sa_family_t));
    EXPECT_EQ(ep.family(), AF_UNIX);
    EXPECT_EQ(ep.size(), sizeof(sa_family_t));
    EXPECT_EQ(ep.address(), "");
    EXPECT_EQ(ep.to_string(), "(unnamed unix)");
    sockaddr_un other{};
    other.sun_family = AF_UNIX;
    EXPECT_EQ(fibers::endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&other),
                                              sizeof(sa_family_t)),
              ep);
    // A path that fills sun_path without a NUL stops at the length, not at the garbage after.
    std::memset(sa.sun_path, 'p', sizeof sa.sun_path);
    auto full = fibers::endpoint::from_sockaddr(raw, sizeof sa);
    EXPECT_EQ(full.address(), std::string(sizeof sa.sun_path, 'p'));
  });
}

TEST(Endpoint, Ipv6ZoneByInterfaceNameSetsTheScopeIdAndRoundTrips) {
  fibers::run([] {
    const unsigned lo = ::if_nametoindex("lo");
    ASSERT_NE(lo, 0u) << "no loopback interface 'lo'";
    auto ep = fibers::endpoint::parse("[fe80::1%lo]:80");
    EXPECT_EQ(ep.family(), AF_INET6);
    EXPECT_EQ(ep.port(), 80);
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(ep.data());
    EXPECT_EQ(sin6->sin6_scope_id, lo);
    EXPECT_EQ(ep.address(), "fe80::1%lo");
    EXPECT_EQ(ep.to_string(), "[fe80::1%lo]:80");
    EXPECT_EQ(fibers::endpoint::ip("fe80::1%lo", 80), ep);
    EXPECT_EQ(ep.with_port(81).to_string(), "[fe80::1%lo]:81");
    // The zone is part of the address: without it, or on another interface, it differs.
    EXPECT_FALSE(ep == fibers::endpoint::parse("[fe80::1]:80"));
  });
}

TEST(Endpoint, Ipv6ZoneByIndexIsShownByInterfaceNameOrByNumberIfItHasNone) {
  fibers::run([] {
    const unsigned lo = ::if_nametoindex("lo");
    ASSERT_NE(lo, 0u) << "no loopback interface 'lo'";
    auto by_index = fibers::endpoint::parse("[fe80::1%" + std::to_string(lo) + "]:80");
    EXPECT_EQ(by_index, fibers::endpoint::parse("[fe80::1%lo]:80"));
    EXPECT_EQ(by_index.to_string(), "[fe80::1%lo]:80");

    const unsigned nameless = 4000000000u;
    char name[IF_NAMESIZE];
    ASSERT_EQ(::if_indextoname(nameless, name), nullptr) << "interface " << nameless << " exists";
    auto ep = fibers::endpoint::ip("fe80::2%4000000000", 443);
    EXPECT_EQ(reinterpret_cast<const sockaddr_in6*>(ep.data())->sin6_scope_id, nameless);
    EXPECT_EQ(ep.address(), "fe80::2%4000000000");
    EXPECT_EQ(ep.to_string(), "[fe80::2%4000000000]:443");
    EXPECT_EQ(fibers::endpoint::parse(ep.to_string()), ep);
  });
}

TEST(Endpoint, UnknownZoneInterfaceIsAnInvalidArgumentNamingIt) {
  fibers::run([] {
    for (const std::string text : {"[fe80::1%nosuch0]:80", "fe80::1%nosuch0"}) {
      try {
        auto ep = text.starts_with("[") ? fibers::endpoint::parse(text)
                                        : fibers::endpoint::ip(text, 80);
        ADD_FAILURE() << "accepted " << text << " as " << ep.to_string();
      } catch (const std::invalid_argument& e) {
        std::string what = e.what();
        EXPECT_NE(what.find("unknown interface 'nosuch0'"), std::string::npos) << what;
        EXPECT_NE(what.find(text), std::string::npos) << what;
      }
    }
    fibers::endpoint out;
    std::string error;
    EXPECT_FALSE(fibers::endpoint::try_parse("[fe80::1%nosuch0]:80", out, &error));
    EXPECT_NE(error.find("nosuch0"), std::string::npos) << error;
  });
}

}  // namespace
