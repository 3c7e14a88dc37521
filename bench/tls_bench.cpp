// bench/tls_bench.cpp - TLS echo servers side by side, one command, ratios in one run:
//
//   fibers  a libfibers TLS echo server (a fiber per connection, tls::stream over tcp_stream)
//   c       a plain-C-style OpenSSL server: one non-blocking edge-triggered epoll loop, SSL
//           on the socket fd (SSL_set_fd), read-ahead on (one read() per ~16 KiB, not two
//           per record), the baseline
//   go      Go's crypto/tls echo server (bench/peers/go-tls-echo, GOMAXPROCS=1), when `go`
//           is installed (./tools/dev.sh bench installs golang-go); skipped with a message
//
// Each server runs in its own process pinned to CPU 1 (a fresh one per measurement); the
// client, the same for all, runs here on CPU 0: a libfibers runtime with one I/O thread.
//   handshakes  K fibers, each: connect, handshake, write 1 byte, read it back, close (RST,
//               so no TIME_WAIT piles up). "full": no session cache; "resumed": the client
//               keeps the TLS 1.3 ticket and resumes (the fraction resumed is checked).
//               ECDSA P-256 and RSA 2048 server certificates (one CA, ECDSA).
//   bulk        one connection, a writer fiber sending 16 KiB records and a reader fiber
//               reading the echo; MB/s of echoed payload (one direction).
// Figures: operations per second at the client, and the server's CPU (utime+stime from
// /proc/PID/stat) per operation, which is what compares the servers when the client is the
// bottleneck. Ratios are medians over repetitions of (server / C) of the same repetition;
// servers run one after another in an order rotated every repetition.
//
//   tls_bench [--reps N] [--duration SECONDS] [--conns K] [--only TEXT]   (defaults 3, 2, 16;
//             --only runs the scenarios whose name contains TEXT, e.g. "full handshake, ECDSA")
//   tls_bench serve-fibers|serve-c CERT KEY PORT               (what the driver starts)
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <fibers/fibers.hpp>
#include <fibers/tls.hpp>

#include "../tests/tls_certs.hpp"

extern char** environ;

using namespace std::chrono_literals;
namespace tls = fibers::tls;

namespace {

void pin_to(int cpu) {
  if (::sysconf(_SC_NPROCESSORS_ONLN) < 2) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  ::sched_setaffinity(0, sizeof set, &set);
}

// ------------------------------------------------------------------ the fibers server

int serve_fibers(const char* cert, const char* key, int port) {
  const auto ctx = tls::context::server({.cert_file = cert, .key_file = key});
  fibers::run([&] {
    auto l = fibers::tcp_listener::bind(fibers::endpoint::loopback_v4(static_cast<std::uint16_t>(port)));
    for (;;) {
      auto sock = l.accept();
      sock.set_nodelay(true);
      fibers::spawn([s = tls::stream(std::move(sock), ctx)]() mutable {
        char buf[16 * 1024];
        std::error_code ec;
        for (;;) {
          const std::size_t n = s.read_some(buf, ec);
          if (ec || n == 0) break;
          s.write_all(fibers::const_buffer(buf, n), ec);
          if (ec) break;
        }
      }).detach();
    }
  });
  return 0;
}

// ------------------------------------------------------------------ the C-style server

struct c_conn {
  int fd;
  SSL* ssl;
  int handshaken;
  int pending;  // bytes of buf still to SSL_write (retried with the same buffer)
  char buf[16 * 1024];
};

void c_close(c_conn* c) {
  SSL_free(c->ssl);
  ::close(c->fd);
  std::free(c);
}

// Runs a connection until OpenSSL wants the socket (edge-triggered: until EAGAIN).
void c_drive(c_conn* c) {
  if (!c->handshaken) {
    const int r = SSL_do_handshake(c->ssl);
    if (r != 1) {
      const int e = SSL_get_error(c->ssl, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
      ERR_clear_error();
      c_close(c);
      return;
    }
    c->handshaken = 1;
  }
  for (;;) {
    if (c->pending > 0) {
      const int w = SSL_write(c->ssl, c->buf, c->pending);
      if (w <= 0) {
        if (SSL_get_error(c->ssl, w) == SSL_ERROR_WANT_WRITE) return;
        ERR_clear_error();
        c_close(c);
        return;
      }
      c->pending = 0;
    }
    const int n = SSL_read(c->ssl, c->buf, sizeof c->buf);
    if (n <= 0) {
      if (SSL_get_error(c->ssl, n) == SSL_ERROR_WANT_READ) return;
      ERR_clear_error();
      c_close(c);
      return;
    }
    c->pending = n;
  }
}

int serve_c(const char* cert, const char* key, int port) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
    std::fprintf(stderr, "serve-c: cannot load %s / %s\n", cert, key);
    return 1;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_read_ahead(ctx, 1);
  static const unsigned char sid[] = "c";
  SSL_CTX_set_session_id_context(ctx, sid, 1);

  const int l = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(l, 1024) != 0) {
    std::perror("serve-c: bind/listen");
    return 1;
  }
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // the listener
  ::epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
  epoll_event evs[256];
  for (;;) {
    const int n = ::epoll_wait(ep, evs, 256, -1);
    for (int i = 0; i < n; ++i) {
      if (evs[i].data.ptr != nullptr) {
        c_drive(static_cast<c_conn*>(evs[i].data.ptr));
        continue;
      }
      for (;;) {
        const int fd = ::accept4(l, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) break;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        auto* c = static_cast<c_conn*>(std::calloc(1, sizeof(c_conn)));
        c->fd = fd;
        c->ssl = SSL_new(ctx);
        SSL_set_fd(c->ssl, fd);
        SSL_set_accept_state(c->ssl);
        epoll_event cev{};
        cev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
        cev.data.ptr = c;
        ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);  // closing the fd removes it
        c_drive(c);
      }
    }
  }
}

// ------------------------------------------------------------------ the driver

struct server_proc {
  pid_t pid = -1;
  server_proc() = default;
  server_proc(const server_proc&) = delete;
  server_proc& operator=(const server_proc&) = delete;
  ~server_proc() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
  /// utime + stime, seconds.
  double cpu_seconds() const {
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const auto close_paren = s.rfind(')');
    if (close_paren == std::string::npos) return 0;
    std::vector<std::string> fields;
    std::string cur;
    for (char c : s.substr(close_paren + 2)) {
      if (c == ' ') {
        fields.push_back(cur);
        cur.clear();
      } else {
        cur += c;
      }
    }
    // Fields after the name start at 3 (state): utime is 14, stime 15.
    const double ticks = std::stod(fields.at(11)) + std::stod(fields.at(12));
    return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
  }
};

std::uint16_t free_port() {
  auto l = fibers::tcp_listener::bind(fibers::endpoint::loopback_v4(0));
  return l.local_endpoint().port();
}

struct setup {
  std::string self, go_binary;
  std::string ca_file;
  std::map<std::string, std::pair<std::string, std::string>> leaves;  // "ECDSA"/"RSA"
};

// Starts `server` (fibers, c, go) with the leaf `cert` on `port` (pinned to CPU 1), waits until
// it accepts.
bool start_server(const setup& su, const std::string& server, const std::string& cert,
                  std::uint16_t port, server_proc& out) {
  const auto& [crt, key] = su.leaves.at(cert);
  std::vector<std::string> args;
  std::vector<std::string> env_strings;
  if (server == "go") {
    args = {su.go_binary, "-cert", crt, "-key", key, "-port", std::to_string(port)};
    env_strings.push_back("GOMAXPROCS=1");
  } else {
    args = {su.self, "serve-" + server, crt, key, std::to_string(port)};
  }
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "GOMAXPROCS=", 11) != 0) env_strings.emplace_back(*e);
  }
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  // The child inherits this thread's CPU mask: CPU 1 from its first instruction, so every
  // thread it starts (Go's runtime threads included) stays there too.
  pin_to(1);
  const int rc = ::posix_spawn(&out.pid, argv[0], nullptr, nullptr, argv.data(), envp.data());
  pin_to(0);
  if (rc != 0) return false;
  const auto ep = fibers::endpoint::loopback_v4(port);
  for (int i = 0; i < 1000; ++i) {
    std::error_code ec;
    auto probe = fibers::tcp_stream::connect(ep, ec, 1s);
    if (!ec) return true;
    fibers::this_fiber::sleep_for(5ms);
  }
  return false;
}

// Closes with RST: the client closes first, and thousands of TIME_WAITs would use up ports.
void set_linger0(int fd) {
  linger lg{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

struct figures {
  double per_s = 0;       // handshakes/s or MB/s
  double cpu_per_op = 0;  // server CPU µs per handshake, or per MB
  double resumed = 0;     // fraction of handshakes resumed
  bool ok = false;
};

figures measure_handshakes(const setup& su, const server_proc& srv, std::uint16_t port, bool resume,
                           int conns, std::chrono::milliseconds duration) {
  const auto cctx = tls::context::client({.ca_file = su.ca_file, .session_cache = resume});
  const auto ep = fibers::endpoint::loopback_v4(port);
  long ops = 0, reused = 0, errors = 0;
  bool counting = false, stop = false;
  auto one = [&] {
    std::error_code ec;
    auto sock = fibers::tcp_stream::connect(ep, ec, 5s);
    if (ec) {
      ++errors;
      return;
    }
    sock.set_nodelay(true);
    set_linger0(sock.native_handle());
    tls::stream s(std::move(sock), cctx, "localhost");
    char c = 'x';
    s.write_all(fibers::const_buffer(&c, 1), ec, 5s);
    if (!ec) s.read_exact(fibers::mutable_buffer(&c, 1), ec, 5s);
    if (ec) {
      if (errors++ == 0) std::fprintf(stderr, "tls_bench: %s: %s\n", ec.message().c_str(), s.last_error_detail().c_str());
      return;
    }
    if (counting) {
      ++ops;
      reused += s.session_reused() ? 1 : 0;
    }
  };
  one();  // a ticket for the resumed runs
  std::vector<fibers::fiber> clients;
  for (int i = 0; i < conns; ++i) {
    clients.push_back(fibers::spawn([&] {
      while (!stop) one();
    }));
  }
  fibers::this_fiber::sleep_for(300ms);  // warm-up
  const double cpu0 = srv.cpu_seconds();
  const auto t0 = fibers::clock::now();
  counting = true;
  fibers::this_fiber::sleep_for(duration);
  counting = false;
  const double secs = std::chrono::duration<double>(fibers::clock::now() - t0).count();
  const double cpu = srv.cpu_seconds() - cpu0;
  stop = true;
  for (auto& f : clients) f.join();
  figures f;
  f.ok = ops > 0 && errors == 0;
  if (errors > 0) std::fprintf(stderr, "tls_bench: %ld handshake errors\n", errors);
  f.per_s = static_cast<double>(ops) / secs;
  f.cpu_per_op = ops > 0 ? cpu * 1e6 / static_cast<double>(ops) : 0;
  f.resumed = ops > 0 ? static_cast<double>(reused) / static_cast<double>(ops) : 0;
  return f;
}

figures measure_bulk(const setup& su, const server_proc& srv, std::uint16_t port,
                     std::chrono::milliseconds duration) {
  const auto cctx = tls::context::client({.ca_file = su.ca_file, .session_cache = false});
  auto sock = fibers::tcp_stream::connect(fibers::endpoint::loopback_v4(port), 5s);
  sock.set_nodelay(true);
  tls::stream s(std::move(sock), cctx, "localhost");
  s.handshake(5s);
  bool stop = false, counting = false;
  long long bytes = 0;
  auto writer = fibers::spawn([&] {
    std::vector<char> rec(16 * 1024, 'b');
    std::error_code ec;
    while (!stop && !ec) {
      s.write_all(rec, ec, 10s);
      // A writer whose socket always has room never parks: let the reader run between
      // records, or the two alternate in bursts of megabytes.
      fibers::this_fiber::yield();
    }
  });
  auto reader = fibers::spawn([&] {
    std::vector<char> buf(64 * 1024);
    std::error_code ec;
    for (;;) {
      const std::size_t n = s.read_some(buf, ec, 10s);
      if (ec || n == 0) break;
      if (counting) bytes += static_cast<long long>(n);
    }
  });
  fibers::this_fiber::sleep_for(300ms);
  const double cpu0 = srv.cpu_seconds();
  const auto t0 = fibers::clock::now();
  counting = true;
  fibers::this_fiber::sleep_for(duration);
  counting = false;
  const double secs = std::chrono::duration<double>(fibers::clock::now() - t0).count();
  const double cpu = srv.cpu_seconds() - cpu0;
  stop = true;
  s.close();
  writer.join();
  reader.join();
  figures f;
  const double mb = static_cast<double>(bytes) / 1e6;
  f.ok = bytes > 0;
  f.per_s = mb / secs;
  f.cpu_per_op = mb > 0 ? cpu * 1e6 / mb : 0;
  return f;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

std::string build_go_peer(const std::string& out_dir) {
  const char* path = std::getenv("PATH");
  std::string go;
  for (std::string dirs = path ? path : ""; !dirs.empty();) {
    const auto colon = dirs.find(':');
    const std::string d = dirs.substr(0, colon);
    if (!d.empty() && ::access((d + "/go").c_str(), X_OK) == 0) {
      go = d + "/go";
      break;
    }
    dirs = colon == std::string::npos ? "" : dirs.substr(colon + 1);
  }
  if (go.empty()) {
    std::printf("go: not installed, Go column skipped (./tools/dev.sh bench installs golang-go)\n");
    return {};
  }
  const std::string bin = out_dir + "/go-tls-echo";
  const std::string cmd = "cd '" TLS_BENCH_PEERS "' && GOCACHE='" + out_dir + "/gocache' GOPATH='" +
                          out_dir + "/gopath' GOFLAGS= GOPROXY=off CGO_ENABLED=0 '" + go +
                          "' build -o '" + bin + "' ./go-tls-echo";
  if (std::system(cmd.c_str()) != 0) {
    std::printf("go: build of bench/peers/go-tls-echo failed, Go column skipped\n");
    return {};
  }
  return bin;
}

int drive(int reps, std::chrono::milliseconds duration, int conns, const std::string& only) {
  pin_to(0);
  char tmpl[] = "/tmp/tls-bench-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  setup su;
  su.self = "/proc/self/exe";
  {
    char self[4096];
    const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) su.self.assign(self, static_cast<std::size_t>(n));
  }
  fibers_test::test_ca ca(dir, "bench CA");
  su.ca_file = ca.ca_file();
  su.leaves["ECDSA"] = ca.issue("ecdsa");
  su.leaves["RSA"] = ca.issue("rsa", {.rsa = true});
  su.go_binary = build_go_peer(dir);
  std::vector<std::string> servers = {"fibers", "c"};
  if (!su.go_binary.empty()) servers.push_back("go");

  struct scenario {
    std::string name, cert, unit, cpu_unit;
    int kind;  // 0 full, 1 resumed, 2 bulk
  };
  const std::vector<scenario> scenarios = {
      {"full handshake, ECDSA P-256", "ECDSA", "hs/s", "us/hs", 0},
      {"resumed handshake, ECDSA P-256", "ECDSA", "hs/s", "us/hs", 1},
      {"full handshake, RSA 2048", "RSA", "hs/s", "us/hs", 0},
      {"resumed handshake, RSA 2048", "RSA", "hs/s", "us/hs", 1},
      {"bulk 16 KiB records, ECDSA", "ECDSA", "MB/s", "us/MB", 2},
  };
  std::vector<bool> run(scenarios.size(), true);
  for (std::size_t si = 0; si < scenarios.size(); ++si) {
    run[si] = only.empty() || scenarios[si].name.find(only) != std::string::npos;
  }
  // results[scenario][server] = per repetition
  std::vector<std::map<std::string, std::vector<figures>>> results(scenarios.size());
  fibers::run([&] {
    for (int rep = 0; rep < reps; ++rep) {
      for (std::size_t si = 0; si < scenarios.size(); ++si) {
        const scenario& sc = scenarios[si];
        if (!run[si]) continue;
        for (std::size_t k = 0; k < servers.size(); ++k) {
          const std::string& server = servers[(k + static_cast<std::size_t>(rep)) % servers.size()];
          server_proc srv;
          const std::uint16_t port = free_port();
          figures f;
          if (!start_server(su, server, sc.cert, port, srv)) {
            std::fprintf(stderr, "tls_bench: %s did not start\n", server.c_str());
          } else if (sc.kind == 2) {
            f = measure_bulk(su, srv, port, duration);
          } else {
            f = measure_handshakes(su, srv, port, sc.kind == 1, conns, duration);
          }
          results[si][server].push_back(f);
          std::fprintf(stderr, "  rep %d %-32s %-7s %10.1f %s  %8.1f %s%s\n", rep + 1, sc.name.c_str(),
                       server.c_str(), f.per_s, sc.unit.c_str(), f.cpu_per_op, sc.cpu_unit.c_str(),
                       sc.kind == 1 ? (" resumed " + std::to_string(static_cast<int>(f.resumed * 100)) + "%").c_str() : "");
        }
      }
    }
  });

  std::printf("\ntls_bench: %d repetitions x %lld ms, %d client connections for handshakes; server "
              "pinned to CPU 1, client to CPU 0; library %s\n",
              reps, static_cast<long long>(duration.count()), conns,
#ifdef NDEBUG
              "built with NDEBUG"
#else
              "built WITHOUT NDEBUG (not a release build)"
#endif
  );
  std::printf("Medians; ratios are median (server / C) over the repetitions [min-max]. "
              "Higher rate and lower server CPU per op are better.\n\n");
  std::printf("%-32s %-7s %12s %10s %18s %18s\n", "scenario", "server", "rate", "srv CPU",
              "rate / C", "CPU / C");
  for (std::size_t si = 0; si < scenarios.size(); ++si) {
    const scenario& sc = scenarios[si];
    if (!run[si]) continue;
    const auto& base = results[si]["c"];
    for (const auto& server : servers) {
      const auto& v = results[si][server];
      std::vector<double> rate, cpu, rr, cr;
      for (std::size_t i = 0; i < v.size(); ++i) {
        if (!v[i].ok) continue;
        rate.push_back(v[i].per_s);
        cpu.push_back(v[i].cpu_per_op);
        if (i < base.size() && base[i].ok && base[i].per_s > 0 && base[i].cpu_per_op > 0) {
          rr.push_back(v[i].per_s / base[i].per_s);
          cr.push_back(v[i].cpu_per_op / base[i].cpu_per_op);
        }
      }
      char rate_s[64], cpu_s[64], rr_s[64] = "", cr_s[64] = "";
      std::snprintf(rate_s, sizeof rate_s, "%.0f %s", median(rate), sc.unit.c_str());
      std::snprintf(cpu_s, sizeof cpu_s, "%.1f %s", median(cpu), sc.cpu_unit.c_str());
      if (!rr.empty()) {
        std::snprintf(rr_s, sizeof rr_s, "%.2f [%.2f-%.2f]", median(rr), *std::min_element(rr.begin(), rr.end()),
                      *std::max_element(rr.begin(), rr.end()));
        std::snprintf(cr_s, sizeof cr_s, "%.2f [%.2f-%.2f]", median(cr), *std::min_element(cr.begin(), cr.end()),
                      *std::max_element(cr.begin(), cr.end()));
      }
      std::printf("%-32s %-7s %12s %10s %18s %18s\n", sc.name.c_str(), server.c_str(), rate_s, cpu_s, rr_s, cr_s);
    }
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  if (argc == 5 && std::strcmp(argv[1], "serve-fibers") == 0) return serve_fibers(argv[2], argv[3], std::atoi(argv[4]));
  if (argc == 5 && std::strcmp(argv[1], "serve-c") == 0) return serve_c(argv[2], argv[3], std::atoi(argv[4]));
  int reps = 3, conns = 16;
  std::string only;
  double secs = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--reps") == 0) {
      reps = std::atoi(argv[i + 1]);
    } else if (std::strcmp(argv[i], "--duration") == 0) {
      secs = std::atof(argv[i + 1]);
    } else if (std::strcmp(argv[i], "--conns") == 0) {
      conns = std::atoi(argv[i + 1]);
    } else if (std::strcmp(argv[i], "--only") == 0) {
      only = argv[i + 1];
    } else {
      std::fprintf(stderr, "usage: tls_bench [--reps N] [--duration SECONDS] [--conns K] [--only TEXT]\n");
      return 2;
    }
  }
  return drive(reps, std::chrono::milliseconds(static_cast<long>(secs * 1000)), conns, only);
}
