// chat: a TCP chat room. Each connection has a fiber that reads lines and sends them to the
// room's channel; the room fiber selects between "someone joined" and "a line arrived" and
// writes every line to every member.
//
//   chat serve PORT     run the room until killed
//   chat demo           run the room on a free port with three clients, print what they got
#include <fibers/fibers.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

struct room {
  fibers::channel<std::shared_ptr<fibers::tcp_stream>> joins{16};
  fibers::channel<std::string> lines{64};

  // Broadcasts each line to every member; a member that fails to take it is dropped.
  void run() {
    std::vector<std::shared_ptr<fibers::tcp_stream>> members;
    bool open = true;
    while (open) {
      fibers::select(
          fibers::on_recv(joins, [&](std::optional<std::shared_ptr<fibers::tcp_stream>> m) {
            if (m) members.push_back(std::move(*m));
          }),
          fibers::on_recv(lines, [&](std::optional<std::string> line) {
            if (!line) {
              open = false;
              return;
            }
            std::erase_if(members, [&](auto& m) {
              std::error_code ec;
              m->write_all(*line, ec, 1s);
              return static_cast<bool>(ec);
            });
          }));
    }
  }
};

// One member: every line it sends goes to the room.
void serve_member(std::shared_ptr<room> r, std::shared_ptr<fibers::tcp_stream> s) {
  r->joins.send(s);
  std::string pending;
  char buf[512];
  std::error_code ec;
  while (std::size_t n = s->read_some(buf, ec)) {
    pending.append(buf, n);
    for (auto nl = pending.find('\n'); nl != std::string::npos; nl = pending.find('\n')) {
      r->lines.send(pending.substr(0, nl + 1));
      pending.erase(0, nl + 1);
    }
  }
}

// Members are detached fibers: each keeps the room alive while it runs.
void serve(fibers::tcp_listener& l, const std::shared_ptr<room>& r) {
  for (;;) {
    auto s = std::make_shared<fibers::tcp_stream>(l.accept());
    fibers::spawn([r, s] { serve_member(r, s); }).detach();
  }
}

int demo() {
  return fibers::run([] {
    auto r = std::make_shared<room>();
    auto listener = fibers::tcp_listener::bind(fibers::endpoint::parse("127.0.0.1:0"));
    const auto port = listener.local_endpoint().port();
    fibers::fiber hub = fibers::spawn([r] { r->run(); });
    fibers::fiber acceptor = fibers::spawn([&] { serve(listener, r); });
    std::vector<std::string> report;
    fibers::latch joined(3);
    fibers::with_scope([&](fibers::scope& clients) {
      for (int i = 0; i < 3; ++i) {
        clients.spawn([&, i] {
          auto c = fibers::tcp_stream::connect("localhost", port, 5s);  // resolved by fibers::dns
          fibers::this_fiber::sleep_for(20ms);  // the room has taken every connection
          joined.count_down();
          joined.wait();
          c.write_all("hello from " + std::to_string(i) + "\n", 5s);
          std::string got;
          char buf[256];
          while (std::count(got.begin(), got.end(), '\n') < 3) got.append(buf, c.read_some(buf, 5s));
          std::vector<std::string> heard;
          for (std::size_t p = 0, nl; (nl = got.find('\n', p)) != std::string::npos; p = nl + 1) {
            heard.push_back(got.substr(p, nl - p));
          }
          std::sort(heard.begin(), heard.end());
          std::string line = "client " + std::to_string(i) + " heard:";
          for (auto& h : heard) line += " [" + h + "]";
          report.push_back(line);
        });
      }
    });
    std::sort(report.begin(), report.end());
    for (auto& line : report) std::printf("%s\n", line.c_str());
    for (fibers::fiber* f : {&acceptor, &hub}) {  // stop them before what they use goes away
      f->cancel();
      try {
        f->join();
      } catch (const fibers::canceled&) {
      }
    }
    return 0;
  });
}

}  // namespace

int main(int argc, char** argv) {
  const std::string cmd = argc > 1 ? argv[1] : "";
  if (cmd == "demo") return demo();
  if (cmd == "serve" && argc > 2) {
    return fibers::run([&] {
      auto r = std::make_shared<room>();
      auto l = fibers::tcp_listener::bind(fibers::endpoint::ip("0.0.0.0", static_cast<std::uint16_t>(std::atoi(argv[2]))));
      auto hub = fibers::spawn([r] { r->run(); });
      serve(l, r);
      hub.join();
      return 0;
    });
  }
  std::fprintf(stderr, "usage: chat demo | chat serve PORT\n");
  return 2;
}
