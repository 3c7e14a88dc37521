// bench/peers/asio-echo.cpp - the Boost.Asio peer of the echo comparison.
//
// One io_context per thread (concurrency hint 1), each with its own SO_REUSEPORT acceptor on
// 127.0.0.1:PORT, so the kernel spreads connections over the threads as it does for
// epoll-echo and fibers-echo. A connection is the classic async echo: async_read_some into a
// 64 KiB buffer, async_write of what was read, repeat.
//
//   asio-echo [-p PORT] [-t THREADS]     -p 0 picks a free port; the first line printed names it.
// Stops on SIGINT/SIGTERM.
#include <boost/asio.hpp>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>
#include <unistd.h>
#include <vector>

namespace asio = boost::asio;
using asio::ip::tcp;
using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

namespace {

class session : public std::enable_shared_from_this<session> {
 public:
  explicit session(tcp::socket socket) : socket_(std::move(socket)) {}

  void start() {
    socket_.set_option(tcp::no_delay(true));
    read();
  }

 private:
  void read() {
    socket_.async_read_some(asio::buffer(buffer_),
                            [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
                              if (!ec) self->write(n);
                            });
  }

  void write(std::size_t n) {
    asio::async_write(socket_, asio::buffer(buffer_, n),
                      [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                        if (!ec) self->read();
                      });
  }

  tcp::socket socket_;
  std::array<char, 64 * 1024> buffer_;
};

void accept_loop(tcp::acceptor& acceptor) {
  acceptor.async_accept([&acceptor](boost::system::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted) return;
    if (!ec) std::make_shared<session>(std::move(socket))->start();
    accept_loop(acceptor);
  });
}

// One per thread: its io_context and its own SO_REUSEPORT acceptor. Kept behind a
// unique_ptr because the pending accept refers to the acceptor by address.
struct worker {
  asio::io_context io{1};
  tcp::acceptor acceptor{io};

  explicit worker(unsigned short port) {
    const tcp::endpoint ep(asio::ip::address_v4::loopback(), port);
    acceptor.open(ep.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    acceptor.set_option(reuse_port(true));
    acceptor.bind(ep);
    acceptor.listen(4096);
    accept_loop(acceptor);
  }
};

[[noreturn]] void usage() {
  std::fprintf(stderr, "usage: asio-echo [-p PORT] [-t THREADS]\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  int port = 7004, threads = 1;
  for (int opt; (opt = getopt(argc, argv, "p:t:")) != -1;) {
    switch (opt) {
      case 'p': port = std::atoi(optarg); break;
      case 't': threads = std::atoi(optarg); break;
      default: usage();
    }
  }
  if (port < 0 || port > 65535 || threads < 1) usage();

  try {
    std::vector<std::unique_ptr<worker>> workers;
    for (int i = 0; i < threads; ++i) {
      // The first acceptor fixes the port (it may have been 0); the others share it.
      workers.push_back(std::make_unique<worker>(static_cast<unsigned short>(port)));
      port = workers.front()->acceptor.local_endpoint().port();
    }
    std::printf("asio-echo: listening on 127.0.0.1:%d (%d thread%s)\n", port, threads,
                threads == 1 ? "" : "s");
    std::fflush(stdout);

    asio::signal_set signals(workers.front()->io, SIGINT, SIGTERM);
    signals.async_wait([&](boost::system::error_code, int) {
      for (auto& w : workers) w->io.stop();
    });

    std::vector<std::thread> runners;
    for (int i = 1; i < threads; ++i) runners.emplace_back([&io = workers[i]->io] { io.run(); });
    workers.front()->io.run();
    for (auto& t : runners) t.join();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "asio-echo: %s\n", e.what());
    return 1;
  }
  return 0;
}
