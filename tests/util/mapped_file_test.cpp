#include "util/mapped_file.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "support/test_env.h"
#include "util/cache_files.h"
#include "util/error.h"
#include "util/huge_pages.h"

namespace cortex {
namespace {

uint8_t byte_at(size_t i) {
  return static_cast<uint8_t>((i * 2654435761u) >> 13);
}

// Writes a file of `bytes` whose byte i is byte_at(i), `chunk` bytes per write (the page cache keeps a
// file just written in pieces no larger than its writes).
std::string write_file(const std::string& path, size_t bytes, size_t chunk = size_t{1} << 30) {
  std::vector<uint8_t> data(bytes);
  for (size_t i = 0; i < bytes; ++i) data[i] = byte_at(i);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  for (size_t done = 0; fd >= 0 && done < bytes;) {
    const ssize_t n = ::write(fd, data.data() + done, std::min(chunk, bytes - done));
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  if (fd >= 0) ::close(fd);
  return path;
}

// Whether this system can map `path` on 2 MiB pages: its cached pages dropped, then read back through
// an advised mapping of its own.
bool system_maps_file_on_huge_pages(const std::string& path, size_t bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return false;
  fdatasync(fd);
  posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  void* p = mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) return false;
  madvise(p, bytes, MADV_HUGEPAGE);
  volatile uint8_t sink = 0;
  for (size_t i = 0; i < bytes; i += 4096) sink = sink + static_cast<const uint8_t*>(p)[i];
  const bool huge = huge_page_bytes_mapped(p, bytes) > 0;
  munmap(p, bytes);
  return huge;
}

// file_in_use(path) as another process sees it.
bool in_use_for_another_process(const std::string& path) {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(file_in_use(path) ? 1 : 0);
  int status = 0;
  ::waitpid(child, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 1;
}

TEST(MappedFileTest, AMappingMarksItsFileInUseUntilItGoes) {
  const std::string dir = testing::make_temp_dir("mapped-in-use");
  std::filesystem::create_directories(dir + "/model");
  const std::string path = write_file(dir + "/model/weights.bin", 8192);
  EXPECT_FALSE(file_in_use(path));
  EXPECT_FALSE(in_use_for_another_process(dir));
  {
    auto look = MappedFile::open(path, /*mark_in_use=*/false);  // a look at the file is not a use
    EXPECT_FALSE(file_in_use(path));
    auto file = MappedFile::open(path);
    EXPECT_TRUE(in_use_for_another_process(path));
    EXPECT_TRUE(in_use_for_another_process(dir));  // a folder: any file under it
    EXPECT_TRUE(file_in_use(path));                // this process counts too
    auto second = MappedFile::open(path);          // marks are shared: a second use takes one as well
    file.reset();
    EXPECT_TRUE(in_use_for_another_process(path));
    EXPECT_EQ(second->data()[100], byte_at(100));
  }
  EXPECT_FALSE(in_use_for_another_process(path));
  EXPECT_FALSE(file_in_use(dir + "/no-such-file"));
}

TEST(MappedFileTest, ReadingOnHugePagesKeepsEveryByte) {
  const std::string dir = testing::make_temp_dir("mapped-file");
  const size_t bytes = (size_t{9} << 20) + 123;
  auto file = MappedFile::open(write_file(dir + "/weights.bin", bytes));
  ASSERT_EQ(file->size(), bytes);
  // Two parts one after the other (one run), and a small one apart.
  const MappedFile::HugePageRead r = file->read_on_huge_pages(
      {{100, size_t{5} << 20}, {(size_t{5} << 20) + 100, size_t{3} << 20}, {bytes - 50, 50}});
  // The run [100, 8 MiB + 100) holds three whole 2 MiB pages where the mapping starts on one.
  if (reinterpret_cast<uintptr_t>(file->data()) % kHugePageBytes == 0) {
    EXPECT_EQ(r.wanted, 3 * kHugePageBytes);
  }
  EXPECT_LE(r.after, file->size() + kHugePageBytes);
  for (size_t i = 0; i < bytes; ++i) ASSERT_EQ(file->data()[i], byte_at(i)) << "byte " << i;
}

TEST(MappedFileTest, PartsBeyondTheFileAreRefused) {
  const std::string dir = testing::make_temp_dir("mapped-file");
  auto file = MappedFile::open(write_file(dir + "/small.bin", 10000));
  EXPECT_THROW(file->read_on_huge_pages({{9000, 1001}}), Error);
  EXPECT_THROW(file->read_on_huge_pages({{10001, 0}}), Error);
  EXPECT_NO_THROW(file->read_on_huge_pages({{9000, 1000}, {10000, 0}}));
}

// A file written 4 KiB at a time sits in the page cache in 4 KiB pages; where the system can map a file
// on 2 MiB pages at all, reading it for use in place puts it on them.
TEST(MappedFileTest, AFileJustWrittenComesOutOnHugePagesWhereTheSystemAllows) {
  const std::string dir = testing::make_temp_dir("mapped-file");
  const size_t bytes = size_t{16} << 20;
  auto file = MappedFile::open(write_file(dir + "/weights.bin", bytes, 4096));
  const MappedFile::HugePageRead r = file->read_on_huge_pages({{0, bytes}});
  for (size_t i = 0; i < bytes; i += 4093) ASSERT_EQ(file->data()[i], byte_at(i)) << "byte " << i;
  const bool system_can = system_maps_file_on_huge_pages(write_file(dir + "/probe.bin", bytes), bytes);
  if (!system_can || reinterpret_cast<uintptr_t>(file->data()) % kHugePageBytes != 0) {
    EXPECT_EQ(r.after, r.before);
    return;
  }
  EXPECT_EQ(r.wanted, bytes);
  EXPECT_GE(r.after, bytes / 10 * 9) << "before " << r.before << ", read again " << r.read_again;
  // Read again only when some of it was not on them before.
  EXPECT_EQ(r.read_again, r.before < bytes);
}

}  // namespace
}  // namespace cortex
