// tests/file_test.cpp - fibers::file, read_file and write_file. meson runs this suite twice:
// 'file' (io_uring, the default) and 'file_pool' (FIBERS_FILE_BACKEND=pool).
#include <fcntl.h>
#include <linux/io_uring.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fibers/file.hpp"
#include "heartbeat_fiber.hpp"
#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using fibers::file;
using fibers::file_backend;

bool pool_requested() {
  const char* e = std::getenv("FIBERS_FILE_BACKEND");
  return e != nullptr && std::strcmp(e, "pool") == 0;
}

/// Whether this process may create an io_uring at all (a container's seccomp profile may
/// forbid it; then the library falls back to the pool and says so).
bool io_uring_allowed() {
  io_uring_params p{};
  const long fd = ::syscall(__NR_io_uring_setup, 4, &p);
  if (fd < 0) return false;
  ::close(static_cast<int>(fd));
  return true;
}

file_backend expected_backend() {
  if (pool_requested() || !io_uring_allowed()) return file_backend::pool;
  return file_backend::io_uring;
}

/// The temporary directory's own path.
std::string dir_of(const fibers_test::temp_dir& d) { return std::filesystem::path(d.file("x")).parent_path().string(); }

std::string as_string(const std::vector<char>& v) { return {v.begin(), v.end()}; }

/// A FIFO in `dir` and a writer end held open, so reads on it wait (no EOF) until data comes.
struct fifo {
  explicit fifo(const fibers_test::temp_dir& dir) : path(dir.file("fifo")) {
    if (::mkfifo(path.c_str(), 0600) != 0) throw std::system_error(errno, std::generic_category(), "mkfifo");
    // O_RDWR opens a FIFO without waiting for the other end (Linux).
    writer = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (writer < 0) throw std::system_error(errno, std::generic_category(), "open fifo");
  }
  ~fifo() { ::close(writer); }
  /// Ends `n` reads waiting on the FIFO (abandoned pool reads): writes a byte and waits until
  /// one of them has taken it, n times.
  void release_readers(int n) const {
    for (int i = 0; i < n; ++i) {
      put("r");
      int left = 1;
      for (int k = 0; k < 500 && left > 0; ++k) {
        ::ioctl(writer, FIONREAD, &left);
        if (left > 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    }
  }
  void put(const char* s) const { ASSERT_EQ(::write(writer, s, std::strlen(s)), static_cast<ssize_t>(std::strlen(s))); }
  std::string path;
  int writer = -1;
};

TEST(File, UsesTheExpectedBackend) {
  fibers::run([] {
    EXPECT_EQ(fibers::current_file_backend(), expected_backend())
        << "got " << fibers::to_string(fibers::current_file_backend());
  });
  EXPECT_EQ(fibers::current_file_backend(), file_backend::blocking);  // not a fiber
}

TEST(File, LargeFileRoundTripsThroughWriteFileAndReadFile) {
  fibers_test::temp_dir dir;
  const auto data = fibers_test::pattern(8 * 1024 * 1024, 3);
  const std::string path = dir.file("big");
  fibers::run([&] {
    fibers::write_file(path, data);
    EXPECT_EQ(fibers::read_file(path), as_string(data));
    // Through a file: chunked writes at its own position, reads at scattered offsets.
    {
      auto f = file::open(path + "2", O_RDWR | O_CREAT | O_TRUNC, 0600);
      for (std::size_t off = 0; off < data.size(); off += 1000 * 1000) {
        f.write({data.data() + off, std::min<std::size_t>(1000 * 1000, data.size() - off)});
      }
      EXPECT_EQ(f.position(), data.size());
      EXPECT_EQ(f.size(), data.size());
      std::vector<char> buf(123457);
      for (std::uint64_t off : {std::uint64_t{0}, std::uint64_t{4095}, std::uint64_t{5'000'001},
                                std::uint64_t{data.size() - buf.size()}}) {
        ASSERT_EQ(f.read_at(off, buf), buf.size());
        ASSERT_TRUE(std::equal(buf.begin(), buf.end(), data.begin() + static_cast<std::ptrdiff_t>(off))) << off;
      }
      f.fdatasync();
      f.truncate(1000);
      EXPECT_EQ(f.size(), 1000u);
      f.close();
      EXPECT_FALSE(f.is_open());
    }
  });
}

TEST(File, ReadsShortOnlyAtEndOfFile) {
  fibers_test::temp_dir dir;
  const auto data = fibers_test::pattern(10'000, 4);
  const std::string path = dir.file("small");
  fibers::run([&] {
    fibers::write_file(path, data);
    auto f = file::open(path);
    std::vector<char> buf(4096);
    EXPECT_EQ(f.read_at(9'000, buf), 1'000u);
    EXPECT_EQ(f.read_at(10'000, buf), 0u);
    EXPECT_EQ(f.read_at(1'000'000, buf), 0u);
    std::string all;
    while (std::size_t n = f.read(buf)) all.append(buf.data(), n);
    EXPECT_EQ(all, as_string(data));
    EXPECT_EQ(f.read(buf), 0u);  // still at the end
    std::error_code ec;
    EXPECT_EQ(fibers::read_file(dir.file("empty-does-not-exist"), ec), "");
    EXPECT_EQ(ec, std::errc::no_such_file_or_directory);
    fibers::write_file(dir.file("empty"), std::string_view());
    EXPECT_EQ(fibers::read_file(dir.file("empty")), "");
    // Files whose size says 0 are read to their end.
    EXPECT_FALSE(fibers::read_file("/proc/self/status").empty());
  });
}

TEST(File, ErrorsNameTheOperationAndThePath) {
  fibers_test::temp_dir dir;
  fibers::run([&] {
    const std::string missing = dir.file("nope");
    try {
      (void)file::open(missing);
      ADD_FAILURE() << "open of a missing file succeeded";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
      EXPECT_EQ(std::string(e.what()), "open " + missing + ": No such file or directory");
    }
    std::error_code ec;
    EXPECT_TRUE(fibers::read_file(missing, ec).empty());
    EXPECT_EQ(ec, std::errc::no_such_file_or_directory);
    try {
      (void)fibers::read_file(missing);
      ADD_FAILURE();
    } catch (const std::system_error& e) {
      EXPECT_EQ(std::string(e.what()), "open " + missing + ": No such file or directory");
    }

    // A directory: open for writing fails, reading an open directory fails.
    (void)file::open(dir_of(dir), O_WRONLY, 0, ec);
    EXPECT_EQ(ec, std::errc::is_a_directory);
    auto d = file::open(dir_of(dir), O_RDONLY | O_DIRECTORY);
    char c;
    EXPECT_EQ(d.read_at(0, {&c, 1}, ec), 0u);
    EXPECT_EQ(ec, std::errc::is_a_directory);
    try {
      (void)fibers::read_file(dir_of(dir));
      ADD_FAILURE();
    } catch (const std::system_error& e) {
      EXPECT_EQ(std::string(e.what()), "read " + dir_of(dir) + ": Is a directory");
    }

    // A closed file.
    file closed;
    EXPECT_EQ(closed.read_at(0, {&c, 1}, ec), 0u);
    EXPECT_EQ(ec, std::errc::bad_file_descriptor);
  });
}

TEST(File, PermissionDenied) {
  if (::geteuid() == 0) GTEST_SKIP() << "running as root: permission bits do not deny root";
  fibers_test::temp_dir dir;
  const std::string path = dir.file("locked");
  fibers::run([&] {
    fibers::write_file(path, std::string_view("secret"), {.mode = 0000});
    std::error_code ec;
    (void)file::open(path, O_RDONLY, 0, ec);
    EXPECT_EQ(ec, std::errc::permission_denied);
    try {
      (void)fibers::read_file(path);
      ADD_FAILURE();
    } catch (const std::system_error& e) {
      EXPECT_EQ(std::string(e.what()), "open " + path + ": Permission denied");
    }
  });
}

TEST(File, WritePastTheFileSizeLimitFailsWithFileTooLarge) {
  // No small file system can be made without root: RLIMIT_FSIZE gives the same "no room"
  // shape (the kernel cuts the write short, then fails the next one with EFBIG).
  fibers_test::temp_dir dir;
  const std::string path = dir.file("limited");
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  rlimit lim = saved;
  lim.rlim_cur = 64 * 1024;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &lim), 0);
  std::error_code ec;
  std::size_t written = 0;
  fibers::run([&] {
    auto f = file::open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const auto data = fibers_test::pattern(256 * 1024);
    written = f.write_at(0, data, ec);
  });
  ::setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_EQ(ec, std::errc::file_too_large);
  EXPECT_EQ(written, 64u * 1024);
  EXPECT_EQ(std::filesystem::file_size(path), 64u * 1024);
}

TEST(File, ThousandConcurrentReadsOnOneIoThreadNeverBlockIt) {
  fibers_test::temp_dir dir;
  const auto data = fibers_test::pattern(4 * 1024 * 1024, 7);
  const std::string path = dir.file("shared");
  fibers::runtime rt;  // one I/O thread
  rt.run([&] {
    fibers::write_file(path, data);
    auto f = file::open(path);
    fibers_test::heartbeat hb(2ms);
    int ok = 0;
    std::vector<fibers::fiber> readers;
    readers.reserve(1000);
    for (int i = 0; i < 1000; ++i) {
      readers.push_back(fibers::spawn([&f, &data, &ok, i] {
        std::vector<char> buf(16 * 1024);
        bool good = true;
        for (int k = 0; k < 4; ++k) {
          const std::uint64_t off = (static_cast<std::uint64_t>(i) * 4099 + static_cast<std::uint64_t>(k) * 65537) %
                                    (data.size() - buf.size());
          good = good && f.read_at(off, buf) == buf.size() &&
                 std::equal(buf.begin(), buf.end(), data.begin() + static_cast<std::ptrdiff_t>(off));
        }
        ok += good ? 1 : 0;
      }));
    }
    for (auto& r : readers) r.join();
    hb.stop();
    EXPECT_EQ(ok, 1000);
    EXPECT_GT(hb.ticks(), 0);
#if !defined(__SANITIZE_THREAD__)
    // Not under TSan: spawning 1,000 fibers there holds the thread for 100 ms at a time inside
    // TSan's runtime (the watchdog shows it), whatever the reads do; like the heartbeat suite,
    // the gap is only checked without it.
    EXPECT_LT(hb.max_gap(), fibers_test::stall_limit) << "raw gap " << hb.max_raw_gap().count() << " ms";
#endif
  });
}

TEST(File, CancelOfAReadInFlightReturnsCanceledAndLeavesTheDataForTheNextRead) {
  fibers_test::temp_dir dir;
  fifo q(dir);
  fibers::run([&] {
    auto f = file::open(q.path, O_RDWR);
    std::error_code ec;
    auto reader = fibers::spawn([&] {
      std::vector<char> buf(64);  // on the reader's stack frame: gone once it returns
      (void)f.read(buf, ec);
    });
    fibers::this_fiber::sleep_for(30ms);  // the read is in the kernel (or on a pool thread) now
    reader.cancel();
    reader.join();
    EXPECT_EQ(ec, fibers::errc::canceled);
    q.put("x");
    if (fibers::current_file_backend() == file_backend::io_uring) {
      // Canceled in the kernel: the byte was not taken by the canceled read.
      char c = 0;
      EXPECT_EQ(f.read({&c, 1}, 5s), 1u);
      EXPECT_EQ(c, 'x');
    }
    // On the pool, the abandoned read took "x" into its own buffer and dropped it.
  });
}

TEST(File, RuntimeShutdownEndsAReadInFlight) {
  // The runtime cancels the detached reader; with io_uring it waits for the kernel's cancel
  // before the I/O thread ends and destroys its ring.
  fibers_test::temp_dir dir;
  fifo q(dir);
  std::error_code ec;
  bool done = false;
  {
    fibers::runtime rt;
    rt.run([&] {
      fibers::spawn([&] {
        auto f = file::open(q.path, O_RDWR);
        char buf[8];
        (void)f.read(buf, ec);
        done = true;
      }).detach();
      fibers::this_fiber::sleep_for(20ms);
    });
  }
  EXPECT_TRUE(done);
  EXPECT_EQ(ec, fibers::errc::canceled);
  q.put("z");  // releases a pool thread still waiting in read(2)
}

TEST(File, DeadlineOnAReadInFlightTimesOut) {
  fibers_test::temp_dir dir;
  fifo q(dir);
  fibers::run([&] {
    auto f = file::open(q.path, O_RDWR);
    std::error_code ec;
    char buf[16];
    const auto start = fibers::clock::now();
    EXPECT_EQ(f.read(buf, ec, 50ms), 0u);
    EXPECT_EQ(ec, std::errc::timed_out);
    EXPECT_GE(fibers_test::ms_since(start), 50ms);
    // The inherited deadline applies as well, and the throwing form says what timed out.
    try {
      fibers::with_deadline(30ms, [&] { (void)f.read(buf); });
      ADD_FAILURE();
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::timed_out);
      EXPECT_NE(std::string(e.what()).find("read " + q.path), std::string::npos) << e.what();
    }
    if (fibers::current_file_backend() == file_backend::io_uring) {
      // Data that is there is read at once; the canceled reads took none of it.
      q.put("yy");
      EXPECT_EQ(f.read(buf, 5s), 2u);
      EXPECT_EQ(buf[0], 'y');
    } else {
      // Two pool threads still wait in read(2); their dup of this O_RDWR fd is a writer too,
      // so only data ends their reads: a byte for each, one at a time.
      q.release_readers(2);
    }
    // A deadline already passed starts nothing.
    EXPECT_EQ(f.read(buf, ec, fibers::deadline::at(fibers::clock::now() - 1ms)), 0u);
    EXPECT_EQ(ec, std::errc::timed_out);
  });
}

TEST(File, OpenOfAFifoWithNoWriterTimesOutOnThePoolAndDoesNotWaitOnIoUring) {
  fibers_test::temp_dir dir;
  const std::string path = dir.file("lonely");
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  fibers::run([&] {
    std::error_code ec;
    auto f = file::open(path, O_RDONLY, 0, ec, 50ms);
    if (fibers::current_file_backend() == file_backend::io_uring) {
      // io_uring opens non-blocking first, which for a FIFO does not wait for a writer.
      EXPECT_FALSE(ec) << ec.message();
      EXPECT_TRUE(f.is_open());
    } else {
      EXPECT_EQ(ec, std::errc::timed_out);  // open(2) waits for a writer
    }
  });
  // Release a pool thread still waiting in open(2) (it closes the fd it then gets).
  int w = ::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  if (w >= 0) ::close(w);
}

TEST(File, AtomicWriteFileReplacesTheFileAndLeavesNoTemporary) {
  fibers_test::temp_dir dir;
  const std::string path = dir.file("config");
  fibers::run([&] {
    fibers::write_file(path, std::string_view("old contents"));
    fibers::write_file(path, std::string_view("new"), {.atomic_replace = true, .mode = 0640});
    EXPECT_EQ(fibers::read_file(path), "new");
    struct stat st{};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    const mode_t um = ::umask(0);
    ::umask(um);
    EXPECT_EQ(st.st_mode & 0777, 0640u & ~um);
    // Into a directory that does not exist: the error names the temporary's open.
    try {
      fibers::write_file(dir.file("no-dir/x"), std::string_view("z"), {.atomic_replace = true});
      ADD_FAILURE();
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
      EXPECT_EQ(std::string(e.what()).rfind("open " + dir.file("no-dir/.x.tmp-"), 0), 0u) << e.what();
    }
    // Canceled before it starts: the old file stays.
    fibers::this_fiber::cancel();
    std::error_code ec;
    fibers::write_file(path, std::string_view("never"), {.atomic_replace = true}, ec);
    EXPECT_EQ(ec, fibers::errc::canceled);
  });
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir_of(dir))) names.push_back(e.path().filename().string());
  EXPECT_EQ(names, std::vector<std::string>{"config"});
  std::ifstream in(path);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(s, "new");
}

TEST(File, PlainThreadsMakeBlockingCalls) {
  fibers_test::temp_dir dir;
  const std::string path = dir.file("plain");
  EXPECT_EQ(fibers::current_file_backend(), file_backend::blocking);
  fibers::write_file(path, std::string_view("from a thread"), {.atomic_replace = true});
  EXPECT_EQ(fibers::read_file(path), "from a thread");
  auto f = file::open(path, O_RDWR);
  f.write_at(5, std::string_view("A"));
  char buf[32];
  EXPECT_EQ(f.read_at(0, buf), 13u);
  EXPECT_EQ(std::string(buf, 13), "from A thread");
}

TEST(File, ReadsFromSeveralIoThreadsAtOnce) {
  fibers_test::temp_dir dir;
  const auto data = fibers_test::pattern(1024 * 1024, 9);
  const std::string path = dir.file("multi");
  fibers::write_file(path, data);
  fibers::runtime rt({.io_threads = 2});
  std::atomic<int> ok{0};
  rt.run([&] {
    std::vector<fibers::fiber> fs;
    for (std::size_t t = 0; t < 2; ++t) {
      fs.push_back(rt.spawn_on(t, [&] {
        std::vector<fibers::fiber> inner;
        for (int i = 0; i < 20; ++i) {
          inner.push_back(fibers::spawn([&] {
            if (fibers::read_file(path) == as_string(data)) ok.fetch_add(1);
          }));
        }
        for (auto& x : inner) x.join();
      }));
    }
    for (auto& f : fs) f.join();
  });
  EXPECT_EQ(ok.load(), 40);
}

}  // namespace
