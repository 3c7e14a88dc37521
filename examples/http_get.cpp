// http_get: fetches a URL with HTTP/1.1 over TCP or TLS and prints the body. The name is
// resolved by fibers::dns and connected with Happy Eyeballs; https verifies the server's
// certificate (the system CAs, or --ca FILE).
//
//   http_get [--ca FILE] http://host[:port]/path | https://host[:port]/path
#include <fibers/fibers.hpp>

#include <cstdio>
#include <string>

using namespace std::chrono_literals;

namespace {

struct url {
  bool tls = false;
  std::string host;
  std::uint16_t port = 80;
  std::string path = "/";
};

url parse(const std::string& text) {
  url u;
  std::string rest;
  if (text.rfind("https://", 0) == 0) {
    u.tls = true;
    u.port = 443;
    rest = text.substr(8);
  } else if (text.rfind("http://", 0) == 0) {
    rest = text.substr(7);
  } else {
    throw std::invalid_argument("not an http:// or https:// URL: " + text);
  }
  const auto slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  if (slash != std::string::npos) u.path = rest.substr(slash);
  const auto colon = authority.rfind(':');
  if (colon != std::string::npos && authority.find(']', colon) == std::string::npos) {
    u.port = static_cast<std::uint16_t>(std::stoi(authority.substr(colon + 1)));
    authority.resize(colon);
  }
  u.host = authority;
  return u;
}

// Sends the request and reads the whole response (Connection: close) from any stream.
template <class Stream>
std::string exchange(Stream& s, const url& u) {
  s.write_all("GET " + u.path + " HTTP/1.1\r\nHost: " + u.host + "\r\nConnection: close\r\n\r\n", 10s);
  std::string response;
  char buf[16384];
  std::error_code ec;
  while (std::size_t n = s.read_some(buf, ec, 10s)) response.append(buf, n);
  if (ec && ec != fibers::tls::errc::truncated) throw std::system_error(ec, "read " + u.host);
  return response;
}

}  // namespace

int main(int argc, char** argv) {
  std::string ca, target;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--ca" && i + 1 < argc) {
      ca = argv[++i];
    } else {
      target = a;
    }
  }
  if (target.empty()) {
    std::fprintf(stderr, "usage: http_get [--ca FILE] URL\n");
    return 2;
  }
  try {
    return fibers::run([&] {
      const url u = parse(target);
      std::string response;
      if (u.tls) {
        auto ctx = fibers::tls::context::client({.ca_file = ca});
        auto s = fibers::tls::connect(u.host, u.port, ctx, 10s);
        response = exchange(s, u);
      } else {
        auto s = fibers::tcp_stream::connect(u.host, u.port, 10s);
        response = exchange(s, u);
      }
      const auto body = response.find("\r\n\r\n");
      const std::string status = response.substr(0, response.find("\r\n"));
      if (status.find(" 200 ") == std::string::npos) {
        std::fprintf(stderr, "http_get: %s\n", status.c_str());
        return 1;
      }
      std::fwrite(response.data() + body + 4, 1, response.size() - body - 4, stdout);
      return 0;
    });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "http_get: %s\n", e.what());
    return 1;
  }
}
