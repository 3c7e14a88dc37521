// A program built out of tree against a staged install, with only pkg-config's flags.
#include <fibers/fibers.hpp>

#include <cstdio>

int main() {
  using namespace std::chrono_literals;
  int got = fibers::run([] {
    auto listener = fibers::tcp_listener::bind(fibers::endpoint::parse("127.0.0.1:0"));
    auto server = fibers::spawn([&] {
      auto conn = listener.accept(5s);
      char buf[16];
      std::size_t n = conn.read_some(buf, 5s);
      conn.write_all({buf, n}, 5s);
    });
    auto client = fibers::tcp_stream::connect(listener.local_endpoint(), 5s);
    client.write_all("ping", 5s);
    char reply[4];
    client.read_exact(reply, 5s);
    server.join();
    return reply[0] == 'p' && reply[3] == 'g' ? 42 : 1;
  });
  std::printf("consumer: %d\n", got);
  return got == 42 ? 0 : 1;
}
