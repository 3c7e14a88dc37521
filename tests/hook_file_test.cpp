// tests/hook_file_test.cpp - read, write, pread and pwrite on regular files through the hook:
// what the page cache holds is moved on the thread (no park); what must come from the disk goes
// through the file backend while only the fiber waits; files of in-memory file systems (proc,
// tmpfs) and every call off a fiber stay libc's.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "fibers/fibers.hpp"
#include "fibers/hook.hpp"
#include "hook/hook_test_util.hpp"

namespace {

using namespace std::chrono_literals;
using fibers::hook::call;
using hook_test::kernel_flags;
using hook_test::parked;

/// An unlinked temporary file on a disk file system (the build directory's, not /tmp, which may
/// be tmpfs), closed on destruction.
struct disk_file {
  int fd = -1;
  disk_file() {
    char path[] = "fibers-hook-file-XXXXXX";
    fd = ::mkstemp(path);
    if (fd >= 0) ::unlink(path);
  }
  ~disk_file() {
    if (fd >= 0) ::close(fd);
  }
};

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 4096) % 26);
  return s;
}

/// Writes `data`, flushes it to the disk and drops it from the page cache. False when the
/// kernel kept some of it cached (then a read cannot be made to wait for the disk here).
bool write_uncached(int fd, const std::string& data) {
  if (::pwrite(fd, data.data(), data.size(), 0) != static_cast<ssize_t>(data.size())) return false;
  if (::fsync(fd) != 0 || ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0) return false;
  void* map = ::mmap(nullptr, data.size(), PROT_READ, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) return false;
  const std::size_t pages = (data.size() + 4095) / 4096;
  std::vector<unsigned char> resident(pages);
  const bool ok = ::mincore(map, data.size(), resident.data()) == 0;
  ::munmap(map, data.size());
  if (!ok) return false;
  for (unsigned char r : resident) {
    if (r & 1) return false;
  }
  return true;
}

TEST(HookFile, FileCallsOnAFiberGiveLibcsResultsAndCachedReadsDoNotPark) {
  disk_file f;
  ASSERT_GE(f.fd, 0);
  fibers::run([&] {
    const auto reads = parked(call::read);
    const std::string data = pattern(256 << 10);
    errno = 1234;
    ASSERT_EQ(::write(f.fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
    EXPECT_EQ(errno, 1234) << "a successful call leaves errno alone";
    EXPECT_EQ(::lseek(f.fd, 0, SEEK_CUR), static_cast<off_t>(data.size())) << "write moves the position";
    ASSERT_EQ(::pwrite(f.fd, "XY", 2, 10), 2);
    EXPECT_EQ(::lseek(f.fd, 0, SEEK_CUR), static_cast<off_t>(data.size())) << "pwrite does not";
    std::string want = data;
    want[10] = 'X';
    want[11] = 'Y';
    std::vector<char> buf(data.size() + 100);
    ASSERT_EQ(::pread(f.fd, buf.data(), buf.size(), 0), static_cast<ssize_t>(data.size()));  // short only at the end
    EXPECT_EQ(std::string(buf.data(), data.size()), want);
    EXPECT_EQ(::pread(f.fd, buf.data(), buf.size(), static_cast<off_t>(data.size()) + 5), 0);
    ASSERT_EQ(::lseek(f.fd, 1000, SEEK_SET), 1000);
    ASSERT_EQ(::read(f.fd, buf.data(), 24), 24);
    EXPECT_EQ(std::string(buf.data(), 24), want.substr(1000, 24));
    EXPECT_EQ(::lseek(f.fd, 0, SEEK_CUR), 1024) << "read moves the position";
    ASSERT_EQ(::lseek(f.fd, 0, SEEK_END), static_cast<off_t>(data.size()));
    EXPECT_EQ(::read(f.fd, buf.data(), buf.size()), 0);  // end of file
    EXPECT_EQ(kernel_flags(f.fd) & O_NONBLOCK, 0) << "a regular file is never made non-blocking";
    // (Writes may have gone to the file backend: ext4 refuses RWF_NOWAIT for buffered writes.)
    EXPECT_EQ(parked(call::read), reads) << "everything read was in the page cache";
  });
}

TEST(HookFile, ErrorsAreLibcsAndNothingIsMoved) {
  disk_file f;
  ASSERT_GE(f.fd, 0);
  const int ro = ::open("/proc/self/exe", O_RDONLY | O_CLOEXEC);  // any file opened read-only
  ASSERT_GE(ro, 0);
  fibers::run([&] {
    char c = 'x';
    errno = 0;
    EXPECT_EQ(::pwrite(f.fd, &c, 1, -1), -1);
    EXPECT_EQ(errno, EINVAL);
    errno = 0;
    EXPECT_EQ(::write(ro, &c, 1), -1);
    EXPECT_EQ(errno, EBADF);
    errno = 0;
    EXPECT_EQ(::pread(f.fd, nullptr, 0, 0), 0);
    EXPECT_EQ(errno, 0);
  });
  ::close(ro);
}

TEST(HookFile, AReadThatMustWaitForTheDiskParksTheFiberAndReturnsTheBytes) {
  disk_file f;
  ASSERT_GE(f.fd, 0);
  const std::string data = pattern(4 << 20);
  if (!write_uncached(f.fd, data)) GTEST_SKIP() << "the kernel kept the file cached after fsync + POSIX_FADV_DONTNEED";
  fibers::run([&] {
    const auto reads = parked(call::read);
    // Another fiber keeps running while the read waits (it would not, were the thread blocked
    // in read(2)); counted, not timed.
    std::vector<char> buf(data.size());
    ssize_t got = 0;
    auto reader = fibers::spawn([&] { got = ::pread(f.fd, buf.data(), buf.size(), 0); });
    int turns = 0;
    while (got == 0 && turns < 100000) {
      ++turns;
      fibers::this_fiber::yield();
    }
    reader.join();
    ASSERT_EQ(got, static_cast<ssize_t>(data.size()));
    EXPECT_TRUE(std::string(buf.data(), buf.size()) == data);
    EXPECT_GT(parked(call::read), reads) << "the read went to the file backend";
    // Blocked in read(2), the thread would have run this loop once (the reader runs at the
    // first yield and returns with the bytes); parked, the loop went on while the disk worked.
    EXPECT_GT(turns, 1);
    // read(2) at the fd's position, again from the disk: the position moves by what was read.
    ASSERT_TRUE(write_uncached(f.fd, data));
    ASSERT_EQ(::lseek(f.fd, 4096, SEEK_SET), 4096);
    std::vector<char> part(100000);
    ASSERT_EQ(::read(f.fd, part.data(), part.size()), static_cast<ssize_t>(part.size()));
    EXPECT_TRUE(std::string(part.data(), part.size()) == data.substr(4096, part.size()));
    EXPECT_EQ(::lseek(f.fd, 0, SEEK_CUR), static_cast<off_t>(4096 + part.size()));
  });
}

TEST(HookFile, ACanceledFibersUncachedReadFailsWithEcanceled) {
  disk_file f;
  ASSERT_GE(f.fd, 0);
  const std::string data = pattern(1 << 20);
  if (!write_uncached(f.fd, data)) GTEST_SKIP() << "the kernel kept the file cached after fsync + POSIX_FADV_DONTNEED";
  fibers::run([&] {
    std::vector<char> buf(data.size());
    ssize_t got = 0;
    int err = 0;
    auto reader = fibers::spawn([&] {
      fibers::this_fiber::cancel();  // sticks: the read is asked of a canceled fiber
      got = ::pread(f.fd, buf.data(), buf.size(), 0);
      err = errno;
    });
    reader.join();
    EXPECT_EQ(got, -1);
    EXPECT_EQ(err, ECANCELED);
  });
}

TEST(HookFile, InMemoryFilesAndPlainThreadsStayLibc) {
  disk_file f;
  ASSERT_GE(f.fd, 0);
  const std::string data = pattern(1 << 20);
  write_uncached(f.fd, data);  // from the disk if the kernel lets go of it; libc either way
  const auto reads = parked(call::read);
  // A plain thread: libc, even for a read from the disk.
  std::thread([&] {
    std::vector<char> buf(data.size());
    EXPECT_EQ(::pread(f.fd, buf.data(), buf.size(), 0), static_cast<ssize_t>(buf.size()));
    EXPECT_TRUE(std::string(buf.data(), buf.size()) == data);
  }).join();
  EXPECT_EQ(parked(call::read), reads);
  // proc (made up on each read, and RWF_NOWAIT is not supported there): libc on a fiber too.
  fibers::run([&] {
    const int stat = ::open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    ASSERT_GE(stat, 0);
    char buf[512];
    EXPECT_GT(::read(stat, buf, sizeof buf), 0);
    EXPECT_GT(::pread(stat, buf, sizeof buf, 0), 0);
    ::close(stat);
  });
  EXPECT_EQ(parked(call::read), reads);
}

}  // namespace
